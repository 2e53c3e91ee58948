# mode: query
# expect: SecurityError
# why: compile produces code objects
compile('1', 'x', 'eval')
