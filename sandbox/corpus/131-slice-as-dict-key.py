# mode: execute
# expect: SecurityError
# why: from Python 3.12 a slice is hashable: stored as a key it would come back as a slice object the compiler never saw
d = {}
d[0:1] = [1]
l = []
for k in d:
    l[k] = iter(int, 1)
