# mode: query
# expect: SecurityError
# why: a template stored by another client must not reach format either
db['s'].format(db)
