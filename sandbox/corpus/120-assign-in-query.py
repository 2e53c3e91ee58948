# mode: query
# expect: SyntaxError
# why: a query is one expression: an assignment does not parse
db['x'] = 1
