# mode: execute
# expect: LimitExceeded
# why: adding 1 MB ints in one C loop is uninterruptible; sum() adds in chunks
x = 1 << 8000000
sum([x] * 1000000)
