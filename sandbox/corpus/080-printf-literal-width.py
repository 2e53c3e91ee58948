# mode: query
# expect: LimitExceeded
# why: a width written in the format string
'%999999999d' % 1
