# mode: execute
# expect: SecurityError
# why: coroutines expose cr_frame and need an event loop
async def f():
    return 1
f()
