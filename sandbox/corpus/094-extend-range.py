# mode: execute
# expect: LimitExceeded
# why: list.extend consumes any iterable in C
l = []
l.extend(range(10**12))
