"""Round two, class 5: replies that carried heap addresses or the server's paths.

Each case fails on the server; the error a client gets must show no `0x...` address and no
part of the data directory's path. Two more are not query sources and have their own tests:
a blob that is missing (its error named the blob directory) and a checkpoint that cannot be
written (the OS error named the file).
"""

CASES = [
    {
        "name": "index-of-function",
        "why": "list.index formats the repr of what it looked for",
        "source": "[1].index(lambda: 0)",
    },
    {
        "name": "remove-function",
        "why": "list.remove formats the repr too",
        "source": "[1].remove(lambda: 0)",
    },
    {
        "name": "exception-of-function",
        "why": "an exception carrying a function",
        "source": "raise ValueError(len)",
    },
    {
        "name": "compare-functions",
        "why": "an unorderable comparison names the types",
        "source": "sorted([lambda: 1, lambda: 2])",
    },
]
