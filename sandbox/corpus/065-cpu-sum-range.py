# mode: query
# expect: LimitExceeded
# why: sum over a huge range loops in C where signals cannot interrupt
sum(range(10**12))
