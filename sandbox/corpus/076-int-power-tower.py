# mode: query
# expect: LimitExceeded
# why: 10**10**10 has 33 billion bits
10**10**10
