# mode: query
# expect: LimitExceeded
# why: str.format prices the whole result as it grows, not only each field's width
('{0:9000000}' * 100).format(1)
