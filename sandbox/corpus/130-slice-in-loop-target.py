# mode: execute
# expect: SecurityError
# why: a slice as a for-loop target iterates each item in C
l = []
for l[0:0] in [iter(int, 1)]:
    pass
