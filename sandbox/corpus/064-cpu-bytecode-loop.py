# mode: execute
# expect: LimitExceeded
# why: an endless bytecode loop is stopped by the time budget
while True:
    pass
