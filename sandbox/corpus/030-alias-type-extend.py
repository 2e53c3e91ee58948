# mode: execute
# expect: SecurityError
# why: an alias does not help: the type object still has no attributes
l = db['l']
list.extend(l, [1])
