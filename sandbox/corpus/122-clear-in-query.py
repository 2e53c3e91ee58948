# mode: query
# expect: SecurityError
# why: db.clear() in a query
# requires: store
db.clear()
