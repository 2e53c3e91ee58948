# mode: query
# expect: LimitExceeded
# why: a result string built from shared references: 100 MB of text
str(['x' * 10**6] * 100)
