# mode: query
# expect: SecurityError
# why: print is rewritten by RestrictedPython into a collector; a query has no output
print(db)
