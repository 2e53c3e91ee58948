# mode: query
# expect: SecurityError
# why: a function's __globals__ would expose the guards and the builtins table
(lambda: 0).__globals__
