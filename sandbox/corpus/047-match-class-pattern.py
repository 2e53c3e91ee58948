# mode: execute
# expect: SecurityError
# why: class patterns call isinstance and read __match_args__ on any class
match db:
    case dict(x=x):
        pass
