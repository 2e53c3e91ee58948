# mode: query
# expect: LimitExceeded
# why: f(*x) builds the argument tuple in C
max(*iter(int, 1))
