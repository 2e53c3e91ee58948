# mode: execute
# expect: SecurityError
# why: frame and traceback attributes without underscores are refused too
try:
    1 / 0
except ZeroDivisionError as e:
    e.tb_frame
