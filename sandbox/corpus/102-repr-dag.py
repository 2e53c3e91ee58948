# mode: execute
# expect: LimitExceeded
# why: a list DAG of depth 60 is tiny in memory and 2**60 items as text
a = [1]
for i in range(60):
    a = [a, a]
str(a)
