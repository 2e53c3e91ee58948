# mode: execute
# expect: SecurityError
# why: AttributeError.obj hands back the object whose attribute was missing
try:
    db.nothere
except AttributeError as e:
    e.obj
