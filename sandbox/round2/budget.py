"""Round two, class 2: single C calls that ran far past the request's time budget.

Against a server, each must end within its time budget plus the supervisor's grace (and a
restart), with an error, and never run twice. `stops` says how: "priced" -- refused before the
C call runs (`LimitExceeded`, or the RecursionError CPython would raise; the worker serves on,
within the budget plus a second); "killed" -- the worker stuck in C is killed by the supervisor
and restarted, and the request is quarantined.

Most priced cases walk two structures that share sub-lists: ``a = [a, a]`` forty times is 41
lists in memory and 2**41 elements to any C comparison, which visits a shared part once per
path to it. (The corpus is data, read with `ast.literal_eval`: every source is a literal.)
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
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "two lists sharing sub-lists 2**40 paths deep: one `<` walks every path",
        "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\na < b",
    },
    {
        "name": "shared-structure-count",
        "expect": "LimitExceeded",
        "stops": "priced",
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
    {
        "name": "shared-structure-equal",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "`==` and `!=` walk both structures in step until they differ: they never do",
        "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\n"
        "a == b or a != b",
    },
    {
        "name": "shared-structure-in",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "`x in list` compares x with each item in C",
        "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\n"
        "b in [a] or b not in [a]",
    },
    {
        "name": "shared-structure-index-remove",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "list.index and list.remove compare like count, tuple.index too",
        "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\n"
        "l = [a]\nl.remove(b) if (a,).index(b) else l.index(b)",
    },
    {
        "name": "shared-structure-sorted",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "sorted() compares the items with each other in C",
        "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\n"
        "sorted([a, b])",
    },
    {
        "name": "shared-structure-sort-key",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "list.sort with a key compares the keys the query's function returned",
        "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\n"
        "l = [1, 2]\nl.sort(key=lambda i: a if i == 1 else b)",
    },
    {
        "name": "shared-structure-max",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "max() of two arguments, min() of a generator: one comparison each, in C",
        "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\n"
        "max(a, b) or min(x for x in (a, b))",
    },
    {
        "name": "shared-structure-dict-values",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "dicts compare their values in C: the shared part may hide one level down",
        "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\n"
        "{'k': a, 'n': 1} == {'k': b, 'n': 1}",
    },
    {
        "name": "shared-structure-items",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "dict views compare (and test membership of) their pairs in C",
        "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\n"
        "{1: a}.items() == {1: b}.items() or (1, b) in {1: a}.items()",
    },
    {
        "name": "shared-structure-chain",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "a chained comparison whose middle is a call: each link is a C comparison",
        "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\n"
        "def f():\n    return b\n[] < f() <= a",
    },
    {
        "name": "shared-structure-in-iterator",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "`x in iterator` draws the items in C and compares each with x",
        "source": "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\n"
        "b in iter([a])",
    },
    {
        "name": "long-equal-texts-count",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "a 10 MB text against 100,000 references to an equal one: memcmp of each, 1 TB",
        "source": "s = 'x' * 10**7\nt = 'x' * (10**7 - 1) + 'x'\n([s] * 100000).count(t)",
    },
    {
        "name": "big-equal-ints-in",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "equal 8-million-bit ints are compared digit by digit, once per reference",
        "source": "x = 1 << 8000000\ny = (1 << 8000000) + 1 - 1\ny in [x] * 100000",
    },
    {
        "name": "colliding-set-display",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "`{*x}` builds the set in C like set(x), from the same colliding ints (in a "
        "list: a range's big-int steps would let the time budget's signal in)",
        "source": "k = list(range(0, (2**61 - 1) * 200000, 2**61 - 1))\nlen({*k})",
    },
    {
        "name": "colliding-set-display-parts",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "each starred part under the collision limit, the display over it",
        "source": "p = 2**61 - 1\na = range(0, p * 2000, p)\nb = range(p * 2000, p * 4000, p)\n"
        "len({*a, *b, 0})",
    },
    {
        "name": "colliding-dict-display",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "`{**d, 'k': v}` inserts every key of d in C: d built a key at a time, in budget",
        "source": "p = 2**61 - 1\nd = {}\nfor i in range(2100):\n    d[i * p] = i\n"
        "len({'first': 0, **d})",
    },
    {
        "name": "colliding-dict-copy-into",
        "expect": "LimitExceeded",
        "stops": "priced",
        "why": "dict(d) and x.update(d) of a mapping holding colliding keys",
        "source": "p = 2**61 - 1\nd = {}\nfor i in range(2100):\n    d[i * p] = i\n"
        "x = {'first': 0}\nx.update(d)\nlen(x)",
    },
    {
        "name": "colliding-deep-tuples",
        "expect": "Error",
        "stops": "killed",
        "why": "not priced (sandbox/README.md, residual risks): set() compares each tuple with "
        "every earlier one sharing its hash, each comparison 2**21 paths long",
        "source": "items = []\nfor c in range(40):\n    t = (1,)\n    for i in range(21):\n"
        "        t = (t, t)\n    items.append((t, c * (2**61 - 1)))\nlen(set(items))",
    },
]
