# mode: query
# expect: SecurityError
# why: an f-string field is ordinary code: the attribute rule applies inside it
f'{db.__class__.__mro__}'
