"""Round two, class 1: inputs that drove CPython's C code into unbounded native recursion.

Each case must end in the error named by `expect`, change nothing, and leave the server
serving. Before the fix, every "iterator" case killed the process with SIGSEGV.
"""

CASES = [
    {
        "name": "nested-map",
        "expect": "SecurityError",
        "why": "200,000 map objects inside each other: advancing the outer one recurses in C",
        "source": "x = [1]\nfor i in range(200000):\n    x = map(abs, x)\nlist(x)",
    },
    {
        "name": "nested-filter",
        "expect": "SecurityError",
        "why": "filter of filter of ...: the same recursion through filter's __next__",
        "source": "x = [1]\nfor i in range(200000):\n    x = filter(None, x)\nlist(x)",
    },
    {
        "name": "nested-zip",
        "expect": "SecurityError",
        "why": "zip of zip of ...: each level a C call",
        "source": "x = [1]\nfor i in range(200000):\n    x = zip(x)\nlist(x)",
    },
    {
        "name": "nested-enumerate",
        "expect": "SecurityError",
        "why": "enumerate of enumerate of ...",
        "source": "x = [1]\nfor i in range(200000):\n    x = enumerate(x)\nlist(x)",
    },
    # iter() of iter() of ... builds no nesting: iter(it) is it, as in CPython.
    {
        "name": "nested-mixed",
        "expect": "SecurityError",
        "why": "every wrapper kind in one chain, consumed by a membership test",
        "source": "x = [1]\nfor i in range(100000):\n"
        "    x = zip(filter(None, map(abs, iter(enumerate(x)))))\n1 in x",
    },
    {
        "name": "nested-items",
        "expect": "SecurityError",
        "why": "dict items wrapped in zip again and again, consumed by dict()",
        "source": "x = {1: 2}.items()\nfor i in range(200000):\n    x = zip(x)\ndict(x)",
    },
    {
        "name": "deep-list-compare",
        "expect": "RecursionError",
        "why": "a list nested 300,000 deep compared with itself: list_richcompare recurses",
        "source": "x = []\nfor i in range(300000):\n    x = [x]\nx == x[0]",
    },
    {
        "name": "deep-dict-repr",
        "expect": "RecursionError",
        "why": "repr of a dict nested 300,000 deep",
        "source": "x = {}\nfor i in range(300000):\n    x = {'a': x}\nrepr(x)",
    },
    {
        "name": "self-reference-equal",
        "expect": "RecursionError",
        "why": "two self-referencing lists compared: no identity shortcut between them",
        "source": "x = []\nx.append(x)\ny = []\ny.append(y)\nx == y",
    },
]
