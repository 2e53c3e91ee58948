# mode: query
# expect: SecurityError
# why: a lambda parameter named like a guard
(lambda _write_=None: 0)()
