# mode: execute
# expect: SecurityError
# why: a keyword-only parameter named like a guard
def f(*, _getiter_=None):
    return [x for x in db]
f()
