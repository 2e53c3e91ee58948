"""Round two, class 6: keys that could be stored but not replayed from the journal.

A NaN is not equal to itself: a later write below such a key, or its deletion, names a key
that replay cannot find, and the database did not reopen. Each case must be refused when
written (TypeError), and the database must reopen with the same tree.
"""

CASES = [
    {
        "name": "nan-key",
        "expect": "TypeError",
        "why": "a NaN key stored directly",
        "source": "db['n'] = {float('nan'): {}}",
    },
    {
        "name": "nan-item-write",
        "expect": "TypeError",
        "why": "a NaN key written into a dict",
        "source": "db['d'][float('nan')] = 1",
    },
    {
        "name": "nan-in-tuple-key",
        "expect": "TypeError",
        "why": "a NaN inside a tuple key",
        "source": "db['d'][(1, float('nan'))] = 1",
    },
    {
        "name": "nan-update",
        "expect": "TypeError",
        "why": "dict.update with a NaN key",
        "source": "db['d'].update({float('nan'): 1})",
    },
    {
        "name": "nan-records",
        "expect": "TypeError",
        "why": "a list of flat dicts (the bulk copy path) with one NaN key",
        "source": "db['r'] = [{'a': 1}] * 1000 + [{float('nan'): 1}]",
    },
    {
        "name": "nan-append",
        "expect": "TypeError",
        "why": "a dict with a NaN key appended",
        "source": "db['l'].append({float('nan'): 1})",
    },
]
