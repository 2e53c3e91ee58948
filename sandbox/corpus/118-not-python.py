# mode: query
# expect: SyntaxError
# why: plain bad syntax
db[
