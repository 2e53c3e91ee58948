# mode: query
# expect: LimitExceeded
# why: one C call would allocate a terabyte
'x' * 10**12
