# mode: query
# expect: LimitExceeded
# why: a '*' width taken from the arguments
'%*d' % (10**9, 1)
