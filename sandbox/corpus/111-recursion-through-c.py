# mode: execute
# expect: RecursionError
# why: recursion through a C function (map) uses the C stack
def f(n):
    return list(map(f, [n + 1]))
f(0)
