# mode: execute
# expect: SecurityError
# why: a positional-only parameter named like a guard would replace it inside the function
def f(_getattr_=len, /):
    return db.keys()
f()
