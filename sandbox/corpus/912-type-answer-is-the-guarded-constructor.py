# mode: query
# expect: LimitExceeded
# why: type(r) answers the query's range builtin, not the raw class, so the cap still applies
type(range(1))(10**18)
