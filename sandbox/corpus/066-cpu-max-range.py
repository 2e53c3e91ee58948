# mode: query
# expect: LimitExceeded
# why: max over a huge range loops in C
max(range(10**12))
