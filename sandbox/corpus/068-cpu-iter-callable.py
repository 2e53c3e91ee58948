# mode: query
# expect: LimitExceeded
# why: iter(callable, sentinel) is endless and any() consumes it in C
any(iter(int, 1))
