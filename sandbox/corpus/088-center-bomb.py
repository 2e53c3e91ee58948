# mode: query
# expect: LimitExceeded
# why: center pads to any width
'x'.center(10**10)
