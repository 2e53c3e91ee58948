# mode: query
# expect: LimitExceeded
# why: join of a thousand references to one megabyte string
'x'.join(['y' * 10**6] * 1000)
