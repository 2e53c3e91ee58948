"""Round two, class 3: an overrun detected after the fact that still committed.

The expensive step is the store's own work after the query (detaching or encoding a result
made of shared references): no guard runs after it, so before the fix the write committed
although the request took several times its budget. Run with a 0.2 s budget.
"""

CASES = [
    {
        "name": "result-after-write",
        "expect": "LimitExceeded",
        "why": "a write, then a result of 3,000,000 references to one list: encoding it is the "
        "slow step",
        "source": "db['late'] = 1\n[[0]] * 3000000",
    },
]
