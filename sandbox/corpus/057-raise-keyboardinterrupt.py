# mode: execute
# expect: SecurityError
# why: KeyboardInterrupt is a BaseException
raise KeyboardInterrupt()
