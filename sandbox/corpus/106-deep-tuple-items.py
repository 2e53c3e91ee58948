# mode: execute
# expect: SecurityError
# why: dict.items() builds (key, value) tuples in C: re-wrapping a value nests without any tuple display
p = 0
for i in range(200000):
    p = next(iter({0: p}.items()))
{p}
