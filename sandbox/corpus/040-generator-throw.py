# mode: query
# expect: SecurityError
# why: throw injects an exception into the generator's frame
(x for x in [1]).throw(ValueError)
