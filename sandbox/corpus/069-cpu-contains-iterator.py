# mode: query
# expect: LimitExceeded
# why: 'in' consumes an iterator in C (CONTAINS_OP is not a guard)
-1 in iter(int, 1)
