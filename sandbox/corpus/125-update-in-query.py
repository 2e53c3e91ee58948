# mode: query
# expect: SecurityError
# why: update in a query
# requires: store
db.update({'x': 2})
