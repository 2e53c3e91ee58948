# mode: query
# expect: SecurityError
# why: id() leaks heap addresses (ASLR)
id(db)
