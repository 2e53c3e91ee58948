# mode: query
# expect: SecurityError
# why: close/throw run code inside a suspended generator (GeneratorExit)
(x for x in [1]).close()
