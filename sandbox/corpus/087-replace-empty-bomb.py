# mode: query
# expect: LimitExceeded
# why: replacing '' inserts between every character
('a' * 10**6).replace('', 'b' * 10**3)
