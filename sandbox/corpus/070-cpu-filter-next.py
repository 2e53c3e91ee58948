# mode: query
# expect: LimitExceeded
# why: filter's next() loops in C until an item passes
next(filter(None, iter(int, 1)))
