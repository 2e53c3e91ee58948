# mode: query
# expect: LimitExceeded
# why: a dynamic width in an f-string
f'{1:>{10**9}}'
