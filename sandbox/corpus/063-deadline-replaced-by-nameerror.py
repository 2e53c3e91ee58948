# mode: execute
# expect: LimitExceeded
# why: an except clause whose class expression raises would replace the stop with a NameError an outer handler catches
while True:
    try:
        try:
            while True:
                pass
        except Undefined:
            pass
    except Exception:
        pass
