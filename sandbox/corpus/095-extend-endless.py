# mode: execute
# expect: LimitExceeded
# why: list.extend of an endless iterator
l = []
l.extend(iter(int, 1))
