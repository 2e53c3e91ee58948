# mode: query
# expect: SecurityError
# why: setdefault writes when the key is missing
# requires: store
db.setdefault('new', 1)
