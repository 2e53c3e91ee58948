# mode: query
# expect: SecurityError
# why: __builtins__ is the raw builtins table of the frame
__builtins__['open']
