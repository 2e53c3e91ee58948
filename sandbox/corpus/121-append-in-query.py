# mode: query
# expect: SecurityError
# why: the stored list refuses the write (read-only query)
# requires: store
db['l'].append(1)
