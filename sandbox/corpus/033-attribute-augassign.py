# mode: execute
# expect: SecurityError
# why: augmented assignment to an attribute
db.x += 1
