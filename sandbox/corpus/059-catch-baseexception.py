# mode: execute
# expect: SecurityError
# why: catching BaseException would catch the sandbox's stop
while True:
    try:
        while True:
            pass
    except BaseException:
        pass
