# mode: execute
# expect: SecurityError
# why: dict.__setitem__ would bypass TrackedDict.__setitem__ and the undo log
dict.__setitem__(db, 'x', 1)
