# mode: query
# expect: SecurityError
# why: a template stored by another client reaches format, whose fields go through _getattr_
db['s'].replace('{0}', '{0.__class__}').format(db)
