# mode: query
# expect: LimitExceeded
# why: each tab expands to the tab size
('\t' * 10**6).expandtabs(10**6)
