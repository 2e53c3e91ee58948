# mode: execute
# expect: SecurityError
# why: *args packs its arguments into a tuple in C
pack = lambda *a: a
t = 0
for i in range(200000):
    t = pack(t)
{t}
