# mode: query
# expect: LimitExceeded
# why: bytes(n) allocates n zero bytes
bytes(10**12)
