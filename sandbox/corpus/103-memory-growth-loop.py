# mode: execute
# expect: LimitExceeded
# why: a bytecode loop appending megabyte strings: no single call is large
l = []
while True:
    l.append('x' * 10**6 + str(len(l)))
