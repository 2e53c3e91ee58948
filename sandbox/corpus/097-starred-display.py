# mode: query
# expect: LimitExceeded
# why: [*x] collects x in C before any guard runs
[*iter(int, 1)]
