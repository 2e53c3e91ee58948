# mode: execute
# expect: LimitExceeded
# why: a bytecode loop that only builds tiny objects, forever
x = None
while True:
    x = [x, x, x]
