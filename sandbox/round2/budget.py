"""Round two, class 2: single C calls that ran far past the request's time budget.

Against a server, each must end within its time budget plus the supervisor's grace (and a
restart), with an error, and never run twice. `stops` says how: "priced" -- refused before the
C call runs (`LimitExceeded`, the worker serves on); "killed" -- the worker stuck in C is
killed by the supervisor and restarted, and the request is quarantined.
"""

CASES = [
    {
        "name": "colliding-int-set",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "ints equal modulo 2**61-1 share one hash: set() of 200,000 of them is quadratic "
        "in one C call (minutes)",
        "source": "len(set(range(0, (2**61 - 1) * 200000, 2**61 - 1)))",
    },
    {
        "name": "colliding-int-dict",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "the same collisions, as dict keys built by dict() in C",
        "source": "k = range(0, (2**61 - 1) * 200000, 2**61 - 1)\nlen(dict(zip(k, k)))",
    },
    {
        "name": "shared-structure-compare",
        "expect": "Error",
        "stops": "killed",
        "why": "two lists sharing sub-lists 2**40 paths deep: one `<` walks every path",
        "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\na < b",
    },
    {
        "name": "shared-structure-count",
        "expect": "Error",
        "stops": "killed",
        "why": "list.count compares each item with a shared structure of 2**40 paths",
        "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\n"
        "[a, a].count(b)",
    },
    {
        "name": "colliding-set-union",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "set.union with the colliding ints: the method inserts them in C",
        "source": "len({1}.union(range(0, (2**61 - 1) * 200000, 2**61 - 1)))",
    },
    {
        "name": "colliding-dict-update",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "dict.update of a fresh dict with colliding keys",
        "source": "k = range(0, (2**61 - 1) * 200000, 2**61 - 1)\nd = {}\nd.update(zip(k, k))\n"
        "len(d)",
    },
]
