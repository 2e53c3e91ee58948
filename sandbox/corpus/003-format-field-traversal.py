# mode: query
# expect: SecurityError
# why: str.format walks attributes in C ('{0.__class__}'), past _getattr_
'{0.__class__.__mro__}'.format(db)
