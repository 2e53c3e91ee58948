# mode: execute
# expect: LimitExceeded
# why: a format string built at run time with millions of conversions
fmt = '%s' * 100000
fmt % (('x' * 1000,) * 100000)
