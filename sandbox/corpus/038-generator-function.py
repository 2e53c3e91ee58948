# mode: execute
# expect: SecurityError
# why: a generator function's frame survives between calls and runs code when closed
def g():
    yield 1
list(g())
