# mode: execute
# expect: SecurityError
# why: a decorator calls an arbitrary callable with the function object
@len
def f():
    pass
