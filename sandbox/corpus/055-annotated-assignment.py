# mode: execute
# expect: SecurityError
# why: annotations evaluate code at definition time for no use
x: int = 1
