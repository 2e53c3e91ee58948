# mode: query
# expect: SecurityError
# why: an async comprehension is a coroutine
[x async for x in db]
