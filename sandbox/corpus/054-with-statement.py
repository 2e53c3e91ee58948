# mode: execute
# expect: SecurityError
# why: a context manager's __exit__ could swallow the stop
with db as d:
    pass
