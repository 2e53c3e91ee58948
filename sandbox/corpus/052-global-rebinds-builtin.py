# mode: execute
# expect: SecurityError
# why: global would let one request's names outlive it
global len
len = 5
