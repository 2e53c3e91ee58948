# mode: execute
# expect: SecurityError
# why: CPython hashes nested tuples recursively in C: ~150,000 levels crash it (SIGSEGV)
t = ()
for i in range(200000):
    t = (t,)
{t}
