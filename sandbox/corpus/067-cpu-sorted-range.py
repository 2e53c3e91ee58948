# mode: query
# expect: LimitExceeded
# why: sorted materialises and sorts in C
sorted(range(10**9))
