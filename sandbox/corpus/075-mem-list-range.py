# mode: query
# expect: LimitExceeded
# why: list() of a huge range
list(range(10**10))
