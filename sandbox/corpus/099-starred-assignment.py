# mode: execute
# expect: LimitExceeded
# why: a, *b = x collects x in C
a, *b = iter(int, 1)
