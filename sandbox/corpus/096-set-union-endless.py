# mode: query
# expect: LimitExceeded
# why: set methods consume any iterable in C
set().union(iter(int, 1))
