# mode: execute
# expect: SecurityError
# why: except* has confused exception types in the past (RestrictedPython advisory)
try:
    pass
except* ValueError:
    pass
