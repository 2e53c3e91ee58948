# mode: execute
# expect: SecurityError
# why: a dotted name in a pattern is looked up in C, without _getattr_
match 1:
    case db.keys:
        pass
