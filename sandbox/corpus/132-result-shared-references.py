# mode: query
# expect: LimitExceeded
# why: a million references to one million-item list: 8 MB in memory, 10**12 items on the wire
# requires: engine
[[list(range(10**6))] * 1000] * 1000
