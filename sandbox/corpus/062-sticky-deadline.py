# mode: execute
# expect: LimitExceeded
# why: the deadline must be sticky: catching the first timeout must not keep the query alive
while True:
    try:
        while True:
            pass
    except Exception:
        pass
