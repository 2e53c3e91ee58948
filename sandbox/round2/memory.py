"""Round two, class 4: requests that take the process's memory far past any budget.

Run against a server started with `--max-memory 400M`: each must be refused with a
`LimitExceeded` (budget "memory") naming the ceiling, its write undone, the server up.
"""

CASES = [
    {
        "name": "many-large-strings",
        "expect": "LimitExceeded",
        "why": "each string is within the size budget; together they are 2 GB",
        "source": "db['mark'] = 1\nx = []\nfor i in range(200):\n    x.append('a' * 10**7)\nlen(x)",
    },
    {
        "name": "many-large-lists",
        "expect": "LimitExceeded",
        "why": "each list is within the size budget (10**6 items, 8 MB); 300 of them are 2.4 GB",
        "source": "db['mark'] = 1\nx = [[i] * 10**6 for i in range(300)]\nlen(x)",
    },
]
