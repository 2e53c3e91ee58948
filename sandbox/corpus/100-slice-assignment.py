# mode: execute
# expect: LimitExceeded
# why: l[i:j] = x iterates x in C
l = []
l[0:0] = iter(int, 1)
