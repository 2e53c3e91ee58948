# mode: execute
# expect: SecurityError
# why: an exception's __traceback__ holds frames
try:
    1 / 0
except ZeroDivisionError as e:
    e.__traceback__.tb_frame.f_globals
