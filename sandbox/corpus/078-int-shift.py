# mode: query
# expect: LimitExceeded
# why: 1 << 10**10 allocates 1.25 GB at once
1 << 10**10
