# mode: execute
# expect: RecursionError
# why: deep recursion must give RecursionError, never a crash
def f(n):
    return f(n + 1)
f(0)
