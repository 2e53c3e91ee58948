# mode: execute
# expect: SecurityError
# why: a method picked by a computed name
name = 'cl' + 'ear'
getattr(db, name)()
