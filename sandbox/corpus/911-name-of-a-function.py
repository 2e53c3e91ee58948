# mode: query
# expect: SecurityError
# why: x.__name__ is rewritten to a guard that answers for types and builtins only
(lambda: db).__name__
