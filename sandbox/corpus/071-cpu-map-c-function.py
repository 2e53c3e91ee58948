# mode: query
# expect: LimitExceeded
# why: map of a C function over an endless iterator runs entirely in C
-1 in map(abs, iter(int, 1))
