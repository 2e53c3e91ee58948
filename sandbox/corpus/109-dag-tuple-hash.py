# mode: execute
# expect: LimitExceeded
# why: (t, t) doubling: hashing visits 2**64 nodes in C
t = (1,)
for i in range(64):
    t = (t, t)
{t}
