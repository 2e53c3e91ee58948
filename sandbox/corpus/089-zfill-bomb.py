# mode: query
# expect: LimitExceeded
# why: zfill pads to any width
'1'.zfill(10**10)
