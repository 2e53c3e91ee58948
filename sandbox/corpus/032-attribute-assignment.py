# mode: execute
# expect: SecurityError
# why: no data type has a writable attribute; functions would accept any
f = lambda: 0
f.x = 1
