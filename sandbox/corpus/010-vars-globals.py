# mode: query
# expect: SecurityError
# why: globals() would hand out the guard functions themselves
globals()['_getattr_']
