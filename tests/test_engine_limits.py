"""Limits the engine enforces on values that share containers, against both kinds of database.

A value may refer to one container many times. Two places expand that sharing: the wire
encoder writes every reference in full (so a query result like ``[big] * 1000`` is a bomb for
the server), and adoption stores a copy per reference (the tree never holds a container twice,
so ``a = [a, a]`` forty times is 2**41 containers). Both are refused early, by size, with
nothing written.

The bombs run against `small_budget`, the embedded kind with a result budget of 100 KB, so
that every test runs in milliseconds: `pyzdb-server` has no option that sets the result
budget. So does the test that lowers the adoption bound in this process (a server's bound is
its own).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import pyzdb
from pyzdb.codec import encode_value, expanded_size
from pyzdb.errors import LimitExceeded
from pyzdb.sandbox import Budget
from pyzdb.storage import budget as storage_budget

RESULT_BUDGET = 100_000

DOUBLING = "a = []\nfor _ in range({n}):\n    a = [a, a]\n"


#: The tree every test starts from (`unchanged` checks it is still there).
TREE = "db['l'] = [0, 1]\ndb['d'] = {'k': 0}"


@pytest.fixture
def db(db: pyzdb.Database) -> pyzdb.Database:
    """The shared `db` (both kinds) holding `TREE`."""
    db.execute(TREE)
    return db


@pytest.fixture
def small_budget(tmp_path: Any) -> Iterator[pyzdb.Database]:
    """The embedded kind holding `TREE`, with a result budget of `RESULT_BUDGET` bytes."""
    database = pyzdb.open(tmp_path / "data", fsync="no", budget=Budget(max_result=RESULT_BUDGET))
    try:
        database.execute(TREE)
        yield database
    finally:
        database.close()


def unchanged(db: pyzdb.Database, history: int) -> None:
    """The tree and the undo history are as the fixture left them, and the next request runs."""
    assert db.get() == {"l": [0, 1], "d": {"k": 0}}
    assert len(db.history()) == history
    assert db.query("len(db['l'])") == 2


# -- adoption: a copy per reference ------------------------------------------------------------

EXPONENTIAL = {
    "db[k] = v": "db['x'] = a",
    "append": "db['l'].append(a)",
    "insert": "db['l'].insert(0, a)",
    "extend": "db['l'].extend([a])",
    "l[i] = v": "db['l'][0] = a",
    "l[a:b] = v": "db['l'][0:1] = [a]",
    "update": "db['d'].update(x=1, y=a)",
    "setdefault": "db['d'].setdefault('y', a)",
    "nested": "db['x'] = {'deep': [1, {'deeper': a}]}",
}


@pytest.mark.parametrize("name", list(EXPONENTIAL))
def test_an_exponentially_shared_value_is_refused_early(db: pyzdb.Database, name: str) -> None:
    history = len(db.history())
    started = time.perf_counter()
    with pytest.raises(LimitExceeded, match="more than 10,000,000 containers") as info:
        db.execute(DOUBLING.format(n=40) + EXPONENTIAL[name])
    assert info.value.budget == "size"
    assert time.perf_counter() - started < 2  # refused on sight, not after 10M copies
    unchanged(db, history)


def test_a_refusal_inside_a_transaction_keeps_the_earlier_requests(db: pyzdb.Database) -> None:
    with db.transaction() as tx:
        tx.execute("db['before'] = 1")
        with pytest.raises(LimitExceeded):
            tx.execute(DOUBLING.format(n=40) + "db['x'] = a")
        tx.execute("db['after'] = 2")
    assert db.query("sorted(db)") == ["after", "before", "d", "l"]


def test_moderate_sharing_is_stored_as_copies(db: pyzdb.Database) -> None:
    db.execute(DOUBLING.format(n=10) + "db['x'] = a")
    assert db.query("db['x'][0] is db['x'][1]") is False
    assert (
        db.execute(
            "n = 0\nstack = [db['x']]\nwhile stack:\n    n += 1\n    stack.extend(stack.pop())\nn",
        )
        == 2**11 - 1
    )
    db.execute("s = [1]\ndb['y'] = [s, s]\ndb['y'][0].append(2)")
    assert db["y"].get() == [[1, 2], [1]]


@pytest.mark.parametrize(
    "source",
    [
        "db['x'] = [[1]] * 20",  # flat copies: no shared container that has children
        "db['x'] = [[[1]]] * 10",  # a shared container with children
        "db['d'].update(a=[[1]] * 10, b=[[1]] * 10)",  # two values, one bound
        "db['l'].extend([[[1]] * 10, [[1]] * 10])",
        "db['l'][0] = [[1]] * 5\ndb['l'] *= 5",  # four more copies of six containers
    ],
)
def test_the_bound_counts_every_copy_of_one_mutation(
    small_budget: pyzdb.Database, monkeypatch: Any, source: str
) -> None:
    db = small_budget
    monkeypatch.setattr(storage_budget, "MAX_ADOPT_NODES", 20)
    db.execute("db['ok'] = [[1]] * 19")  # 20 containers with the list itself: just fits
    db.execute("del db['ok']")
    history = len(db.history())
    with pytest.raises(LimitExceeded) as info:
        db.execute(source)
    assert info.value.budget == "size"
    unchanged(db, history)


# -- results: every reference on the wire ------------------------------------------------------

BOMBS = {
    "list shared 1000 times": "[big] * 1000",
    "list shared by a comprehension": "[big for _ in range(1000)]",
    "shared twice over": "[[big] * 100] * 100",
    "shared in a dict": "{i: big for i in range(1000)}",
    "shared in a tuple": "tuple([big]) * 1000",
    "shared in tracked data": "[db['l']] * 100_000",
    "one long str shared": "['x' * 1000] * 1000",
    "flat dict shared": "[{'k': 'v' * 100}] * 1000",
    "big int shared": "[2**8000] * 1000",
    "nested tuples": "[(big,)] * 1000",
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_a_result_bomb_is_refused_by_its_expanded_size(
    small_budget: pyzdb.Database, name: str
) -> None:
    db = small_budget
    started = time.perf_counter()
    with pytest.raises(LimitExceeded, match="result budget") as info:
        db.query(BOMBS[name], big=list(range(1000)))
    assert info.value.budget == "result"
    assert time.perf_counter() - started < 2
    assert db.query("len(db['l'])") == 2


def test_a_deep_bomb_is_measured_in_the_time_of_its_distinct_parts(db: pyzdb.Database) -> None:
    started = time.perf_counter()
    with pytest.raises(LimitExceeded) as info:  # 2**60 references, 61 distinct lists
        db.execute(DOUBLING.format(n=60) + "a")
    assert info.value.budget == "result"
    assert time.perf_counter() - started < 2


def test_shared_results_within_the_budget_are_returned(db: pyzdb.Database) -> None:
    result = db.query("[big] * 10", big=list(range(1000)))
    assert result == [list(range(1000))] * 10


@pytest.mark.parametrize(
    "source",
    [
        "[big] * 10",
        "[[big] * 3] * 3",
        "{'a': big, 'b': (big, big)}",
        "[db['l'], db['l']]",
        "[{'id': i, 'name': 'user%d' % i, 'age': i % 90} for i in range(300)]",
        "[2**70, -2**70, 2**64 - 1, -2**63, 'é' * 5000, b'x' * 300, None, 1.5, True]",
    ],
)
def test_the_size_is_never_below_what_the_wire_writes(db: pyzdb.Database, source: str) -> None:
    value = db.query(source, big=list(range(100)))
    size = len(encode_value(value))
    assert expanded_size(value, 10**9) >= size  # a bound, cheap where it is far from the limit
    assert size <= expanded_size(value, size) <= size + 64  # near it: exact, or nearly


def test_the_budget_is_the_wire_size(tmp_path: Any) -> None:
    value = list(range(100, 20_000))
    wire = len(encode_value(value))
    for budget, refused in ((wire, False), (wire - 1, True)):
        db = pyzdb.open(tmp_path / str(budget), fsync="no", budget=Budget(max_result=budget))
        try:
            db["v"] = value
            if refused:
                with pytest.raises(LimitExceeded):
                    db["v"].get()
            else:
                assert db["v"].get() == value
        finally:
            db.close()


def test_a_cyclic_result_is_refused(db: pyzdb.Database) -> None:
    with pytest.raises(LimitExceeded, match="cycle") as info:
        db.execute("x = [1]\nx.append(x)\nx")
    assert info.value.budget == "depth"


def test_a_fresh_result_is_handed_over_and_params_stay_the_callers(db: pyzdb.Database) -> None:
    mine = [1, 2, 3]
    got = db.query("p", p=mine)
    assert got == mine and got is not mine
    squares = db.query("[v * v for v in db['l']]")
    squares.append(99)  # the caller owns it: the tree is not involved
    assert db["l"].get() == [0, 1]
    copied = db.query("db['l']")
    assert type(copied) is list
    copied.append(5)
    assert db["l"].get() == [0, 1]
