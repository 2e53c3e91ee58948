# mode: query
# expect: LimitExceeded
# why: one C call would allocate 80 GB of pointers
[0] * 10**10
