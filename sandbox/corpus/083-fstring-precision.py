# mode: query
# expect: LimitExceeded
# why: a float precision of a billion digits
f'{1.0:.999999999f}'
