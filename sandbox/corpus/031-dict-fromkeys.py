# mode: query
# expect: SecurityError
# why: fromkeys is a class method filling a dict from any iterable; left out
dict.fromkeys(range(10))
