# mode: query
# expect: SecurityError
# why: 'builtins' is reserved by RestrictedPython and is not a module here
builtins.open('/etc/passwd')
