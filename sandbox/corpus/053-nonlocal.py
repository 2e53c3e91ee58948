# mode: execute
# expect: SecurityError
# why: nonlocal is refused: nothing needs it
def f():
    x = 1
    def g():
        nonlocal x
        x = 2
    g()
f()
