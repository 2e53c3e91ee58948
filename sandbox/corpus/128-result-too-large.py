# mode: query
# expect: LimitExceeded
# why: seven distinct 10 MB strings: each within the size budget, together over the 64 MiB result budget
# requires: engine
['x' * 10**7 + str(i) for i in range(7)]
