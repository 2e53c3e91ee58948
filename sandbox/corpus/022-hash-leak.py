# mode: query
# expect: SecurityError
# why: hash() of a str leaks the process's hash secret
hash('pyzdb')
