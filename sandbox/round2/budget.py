"""Round two, class 2: single C calls that ran far past the request's time budget.

Against a server, each must end within its time budget plus the supervisor's grace (and a
restart): the worker stuck in C is killed, the request gets an error, the server serves on.
"""

CASES = [
    {"name": "colliding-int-set", "expect": "Error",
     "why": "ints equal modulo 2**61-1 share one hash: set() of 200,000 of them is quadratic "
            "in one C call (minutes)",
     "source": "len(set(range(0, (2**61 - 1) * 200000, 2**61 - 1)))"},
    {"name": "colliding-int-dict", "expect": "Error",
     "why": "the same collisions, as dict keys built by dict() in C",
     "source": "k = range(0, (2**61 - 1) * 200000, 2**61 - 1)\nlen(dict(zip(k, k)))"},
    {"name": "shared-structure-compare", "expect": "Error",
     "why": "two lists sharing sub-lists 2**40 paths deep: one `<` walks every path",
     "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\na < b"},
    {"name": "shared-structure-count", "expect": "Error",
     "why": "list.count compares each item with a shared structure of 2**40 paths",
     "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\n"
               "[a, a].count(b)"},
]
