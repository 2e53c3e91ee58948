# mode: execute
# expect: SecurityError
# why: calling __iadd__ directly is a dunder attribute
db['l'].__iadd__([1])
