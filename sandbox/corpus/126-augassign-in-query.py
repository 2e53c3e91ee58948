# mode: query
# expect: SecurityError
# why: a walrus-held stored dict mutated by a method inside a comprehension
# requires: store
[d.pop('a') for d in [db['d']]]
