# mode: query
# expect: SecurityError
# why: an absent builtin reached as a value refuses when called, as a direct call does
sorted(db['l'], key=id)
