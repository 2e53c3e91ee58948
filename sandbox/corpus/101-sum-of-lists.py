# mode: query
# expect: LimitExceeded
# why: sum(lists, []) concatenates in C, quadratically
sum([[0] * 10**6] * 1000, [])
