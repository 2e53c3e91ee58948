# mode: query
# expect: LimitExceeded
# why: replace multiplies the length by the replacement's
('a' * 10**6).replace('a', 'b' * 10**4)
