# mode: execute
# expect: SecurityError
# why: a bare except catches everything, the stop included
while True:
    try:
        while True:
            pass
    except:
        pass
