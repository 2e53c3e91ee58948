# mode: query
# expect: LimitExceeded
# why: hex() of a 10 MB int is a 20 MB string
hex(1 << 79999000)
