# mode: query
# expect: LimitExceeded
# why: round(int, -n) computes 10**n
round(5, -10**9)
