# mode: execute
# expect: SecurityError
# why: a slice inside an unpacking target is assigned an item that CPython iterates in C
l = []
a, l[0:0] = 1, iter(int, 1)
