# mode: execute
# expect: SecurityError
# why: SystemExit leaves exec() as a BaseException and would stop a server catching Exception
raise SystemExit(0)
