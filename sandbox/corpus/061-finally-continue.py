# mode: execute
# expect: SecurityError
# why: continue in finally swallows any exception in flight, BaseException included
while True:
    try:
        while True:
            pass
    finally:
        continue
