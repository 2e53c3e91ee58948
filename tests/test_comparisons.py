"""Comparisons priced before they run (pyzdb/sandbox/comparisons.py, expansion.py).

CPython compares containers in one C call that no signal interrupts, visiting a shared part
once per path to it. Before the pricing, every bomb below ran for minutes (hours for some)
inside one call, stopped only by the server's supervisor killing the worker; now each is
refused before the call, within a few milliseconds, and honest comparisons answer as CPython.
The server-level replay (no worker restart, within the budget plus a second) is the corpus
sandbox/round2/budget.py in tests/test_hostile_round2.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from pyzdb.errors import LimitExceeded, SecurityError
from pyzdb.sandbox import Budget, compile_request, run
from pyzdb.sandbox.budget import Stop
from pyzdb.sandbox.comparisons import WALK_RATE
from pyzdb.sandbox.expansion import MAX_WALKED, UNBOUNDED, distinct_walk, expanded
from pyzdb.sandbox.iteration import ItemsView
from pyzdb.sandbox.operands import check_assumptions
from pyzdb.sandbox.request import Request
from pyzdb.sandbox.timers import QUERY_FRAMES
from pyzdb.storage.store import Store

FAST = Budget(time=2.0, steps=2_000_000, max_size=1_000_000, memory=256 * 2**20)
#: Two lists of 41 lists each, 2**41 elements to a comparison; equal, but not the same object.
DAGS = "a = [1]\nb = [1]\nfor i in range(40):\n    a = [a, a]\n    b = [b, b]\n"


def execute(source: str, budget: Budget = FAST, **names: object) -> object:
    return run(compile_request(source, "exec"), names, budget)


def plain(source: str, **names: object) -> object:
    """What CPython itself answers: the value of the last line (an expression)."""
    lines = source.rstrip("\n").split("\n")
    scope: dict[str, object] = dict(names)
    exec("\n".join(lines[:-1]), scope)
    return eval(lines[-1], scope)


# -- the two walks are twins ---------------------------------------------------------------------


def _cases() -> list[tuple[str, Any]]:
    dag: list[Any] = [1]
    for _ in range(20):
        dag = [dag, dag]
    cycle: list[Any] = [1]
    cycle.append([cycle])
    deep: list[Any] = []
    for _ in range(MAX_WALKED + 10):
        deep = [deep]
    tagged = [{"id": i, "name": f"u{i}", "tags": ["a", "b"], "score": i / 3} for i in range(50)]
    shared_tags = ["x" * 100, 2**700]
    store = Store({"l": [1, [2, "y" * 200]], "d": {"k": (1, 2), "n": None}})
    return [
        ("int", 5),
        ("big int", 2**5000),
        ("long text", "t" * 1000),
        ("bytes", b"b" * 300),
        ("flat list", list(range(100))),
        ("mixed scalars", [1, 2.5, None, True, 1j, "s", b"b", 2**600, "x" * 130]),
        ("records", tagged),
        ("records sharing a list", [{"tags": shared_tags, "i": i} for i in range(30)]),
        ("tuples", [(i, (i, "x")) for i in range(20)]),
        ("sets", [{1, 2, (3, 4)}, frozenset({"a" * 70})]),
        ("dict views", [{1: [2]}.keys(), {1: [2, 3]}.values()]),
        ("items view", ItemsView({1: [2, 3], "k": "v" * 64}.items(), None)),
        ("dag", dag),
        ("shared at two depths", [dag, [dag, [dag]]]),
        ("repeated text", ["z" * 1000] * 40),
        ("cycle", cycle),
        ("deep", deep),
        ("store's containers", [store.root["l"], store.root["d"]]),
        ("empty", [[], {}, (), set()]),
    ]


CASES = _cases()


@pytest.mark.parametrize("limit", [0, 3, 40, 1000, 10**7])
@pytest.mark.parametrize(("name", "value"), CASES, ids=[name for name, _ in CASES])
def test_level_walk_and_distinct_walk_agree(name: str, value: Any, limit: int) -> None:
    fast, slow = expanded(value, limit), distinct_walk(value, limit)
    assert (0 <= fast <= limit) == (0 <= slow <= limit), (fast, slow)
    if 0 <= fast <= limit:
        assert fast == slow


def test_what_the_walk_counts() -> None:
    assert expanded([{"id": 1, "name": "ann"}] * 2, 100) == 11  # shared refs count in full
    assert expanded(["x" * 640], 100) == 2 + 10  # a unit per 64 characters
    assert expanded([2**1024], 100) == 2 + 2  # and per 512 bits
    assert expanded(dict(CASES)["cycle"], 10**6) == UNBOUNDED  # a cycle
    assert expanded(dict(CASES)["deep"], 10**6) == UNBOUNDED  # deeper than CPython compares
    assert MAX_WALKED > QUERY_FRAMES  # so "deeper" means CPython raises RecursionError first
    dag: list[Any] = [1]
    for _ in range(60):
        dag = [dag, dag]
    started = time.perf_counter()
    assert expanded(dag, 10**9) > 10**9
    assert time.perf_counter() - started < 0.5  # 61 distinct lists, not 2**61 paths


# -- bombs are refused before the C call -------------------------------------------------------

BOMBS = {
    "==": DAGS + "a == b",
    "!=": DAGS + "a != b",
    "<": DAGS + "a < b",
    ">=": DAGS + "[a] >= [b]",
    "in list": DAGS + "b in [1, a]",
    "not in tuple": DAGS + "b not in (a,)",
    "in dict values": DAGS + "b in {1: a}.values()",
    "in iterator": DAGS + "b in iter([a])",
    "in generator": DAGS + "b in (x for x in [a])",
    "list.count": DAGS + "[a, a].count(b)",
    "list.index": DAGS + "[a].index(b)",
    "list.remove": DAGS + "[a].remove(b)",
    "tuple.count": DAGS + "(a,).count(b)",
    "tuple.index": DAGS + "(a,).index(b)",
    "sorted": DAGS + "sorted([a, b])",
    "sorted key": DAGS + "sorted([1, 2], key=lambda i: a if i == 1 else b)",
    "list.sort": DAGS + "l = [a, b]\nl.sort()",
    "list.sort key": DAGS + "l = [1, 2]\nl.sort(key=lambda i: a if i == 1 else b, reverse=True)",
    "max": DAGS + "max([a, b])",
    "min arguments": DAGS + "min(a, b)",
    "max key": DAGS + "max([1, 2], key=lambda i: a if i == 1 else b)",
    "min generator": DAGS + "min(x for x in [a, b])",
    "dict ==": DAGS + "{'k': a} == {'k': b}",
    "items ==": DAGS + "{1: a}.items() == {1: b}.items()",
    "items in": DAGS + "(1, b) in {1: a}.items()",
    "chain pure": DAGS + "[] < a <= b",
    "chain held": DAGS + "def f():\n    return a\n[] < f() <= b",
    "walrus": DAGS + "y = 0\n(a if (y := b) else 0) == y",
    "in a comprehension": DAGS + "[x for x in [a] if x == b]",
    "long texts": "s = 'x' * 10**6\nt = 'x' * (10**6 - 1) + 'x'\n([s] * 10**5).count(t)",
    "big ints": "x = 1 << 800000\ny = (1 << 800000) + 1 - 1\ny in [x] * 10**5",
    "long text sort": "s = 'x' * 10**6\nt = 'x' * (10**6 - 1) + 'x'\nsorted([s, t] * 1000)",
    "long sort, sampled": DAGS + "sorted([a] + list(range(100)) + [b])",
    "long max, sampled": DAGS + "max(x for x in [a] + list(range(100)) + [b])",
    "parameters": "a == b",
}


def _dags() -> dict[str, Any]:
    a: list[Any] = [1]
    b: list[Any] = [1]
    for _ in range(40):
        a, b = [a, a], [b, b]
    return {"a": a, "b": b}


@pytest.mark.parametrize("source", BOMBS.values(), ids=list(BOMBS))
def test_comparison_bombs_are_refused_before_they_run(source: str) -> None:
    """Compiled for the names it runs with, as the engine does: a parameter that is a
    container keeps its comparisons guarded."""
    names = _dags() if source == "a == b" else {}
    started = time.perf_counter()
    with pytest.raises(LimitExceeded) as refused:
        run(compile_request(source, "exec", names), names, FAST)
    assert time.perf_counter() - started < 1.5  # before: minutes to hours in one C call
    assert refused.value.budget in ("steps", "time")
    assert "would compare at least" in str(refused.value)


#: 2,100 ints sharing one hash, in a dict built a key at a time (each insertion a step).
COLLIDING = "p = 2**61 - 1\nd = {}\nfor i in range(2100):\n    d[i * p] = i\n"
COLLISIONS = {
    "set display": "p = 2**61 - 1\nlen({*range(0, p * 3000, p)})",
    "set display parts": "p = 2**61 - 1\nn = p * 2000\nlen({*range(0, n, p), *range(n, 2 * n, p)})",
    "dict display": COLLIDING + "len({0.5: 0, **d})",
    "dict()": COLLIDING + "len(dict(d))",
    "update": COLLIDING + "x = {0.5: 0}\nx.update(d)",
}


@pytest.mark.parametrize("source", COLLISIONS.values(), ids=list(COLLISIONS))
def test_displays_and_mappings_are_priced_like_set_and_dict(source: str) -> None:
    with pytest.raises(LimitExceeded, match="share one hash value"):
        execute(source)


def test_values_that_contain_themselves_raise_cpythons_recursion_error() -> None:
    cycles = "x = []\nx.append(x)\ny = []\ny.append(y)\n"
    with pytest.raises(RecursionError):
        execute(cycles + "x == y")
    with pytest.raises(RecursionError):
        execute(cycles + "sorted([x, y])")
    assert execute(cycles + "x == x") is True  # the same object: CPython's identity shortcut
    assert execute(cycles + "[x] == [y, 1]") is False  # lengths differ: no walk


def test_the_limit_is_the_steps_left_or_the_time_left() -> None:
    build = "[list(range(10)) for i in range(300)]"
    source = f"a = {build}\nb = {build}\na == b"
    assert execute(source) is True
    with pytest.raises(LimitExceeded) as refused:
        execute(source, Budget(time=5.0, steps=8000))  # 1,400 left after building a and b
    assert refused.value.budget == "steps"
    # Long lists go a chunk at a time, each chunk priced: equal ones are compared in full,
    # and two that differ early cost that chunk.
    long = "a = list(range(100000))\nb = list(range(100000))\n"
    assert execute(long + "(a == b, a < b, a <= b, a[:-1] < b, b.pop(0) or a != b)") == (
        True,
        False,
        True,
        True,
        True,
    )
    request = Request(Budget(steps=10**9))
    request.deadline = time.monotonic() + 0.05  # 50 ms left: at most WALK_RATE / 20 units
    limit, budget = request.walk_limit()
    assert budget == "time" and limit <= WALK_RATE // 20
    request.price_pair([0] * (limit // 2), [1] * (limit // 2))
    with pytest.raises(Stop):
        request.price_pair([0] * (limit + 1), [1] * (limit + 1))
    assert isinstance(request.error, LimitExceeded) and request.error.budget == "time"


# -- honest comparisons answer as CPython --------------------------------------------------------

RECORDS = "[{'id': i, 'name': 'user%d' % i, 'age': i % 90, 'tags': ['t', i]} for i in range(n)]"
HONEST = [
    f"a = {RECORDS}\nb = {RECORDS}\na == b",
    f"a = {RECORDS}\nb = {RECORDS}\nb[-1]['tags'][1] = -1\n"
    "t = [r['tags'] for r in a]\nu = [r['tags'] for r in b]\n(a == b, a != b, t < u, t >= u)",
    f"a = {RECORDS}\nb = {RECORDS}\n(a[:-1] == b, b[5] in a, a.count(b[7]), a.index(b[9]))",
    f"a = {RECORDS}\nb = {RECORDS}\nr = b[3]\na.remove(r)\n(len(a), r in a, r not in a)",
    f"a = {RECORDS}\n[r['id'] for r in sorted(a, key=lambda r: (r['age'], -r['id']))][:20]",
    f"a = {RECORDS}\n[r['id'] for r in sorted(a, key=lambda r: r['name'], reverse=True)][:9]",
    f"a = {RECORDS}\n(max(a, key=lambda r: r['age'])['id'], min(a, key=lambda r: r['age'])['id'])",
    f"a = {RECORDS}\n[r['id'] for r in sorted(a[:60], key=lambda r: (r['age'], -r['id']))]",
    f"a = {RECORDS}\nb = sorted(a, key=lambda r: -r['id'])\nb.sort(key=lambda r: r['name'])\n"
    "[r['id'] for r in b][:30]",
    "(min(x for x in range(3000)), max(iter(list(range(2000))), key=lambda v: -v), "
    "min(set(range(1500))), max(range(5000), default=None), min((x for x in []), default=7), "
    "max({str(i): i for i in range(100)}), min(x % 7 for x in range(100)), max([[1], [2]] * 50))",
    "(sorted(range(100), reverse=True)[:3], sorted(str(i) for i in range(300))[:3], "
    "sorted([(i % 3, i) for i in range(200)])[-3:], max([2.5, 1, True] * 30))",
    "a = [[3, 'c'], [1, 'a'], [2, 'b'], [1, 'a']]\n(sorted(a), max(a), min(a), a.count([1, 'a']))",
    "a = [(2, 1), (1, 2), (1, 1)]\na.sort(reverse=True)\n(a, sorted(a, key=lambda t: t[1]))",
    "a = [3, 1, 2]\na.sort(key=lambda v: -v)\n(a, max(3, 1, 2), min([], default=0))",
    "a = [2, 1]\n(max(iter(a)), min(x * 2 for x in a), max([[1], [2]], key=lambda l: -l[0]))",
    "a = {'x': [1, {2}], 'y': (3,)}\nb = {'y': (3,), 'x': [1, {2}]}\n"
    "(a == b, a.items() == b.items())",
    "x = [1, 2]\ny = [1, 2]\nlo = [0]\nhi = [5]\n(lo < x <= y < hi, lo < x < lo, 0 < 1 < len(x))",
    "calls = []\ndef f(v):\n    calls.append(v)\n    return v\n(f([1]) < f([2]) < f([3]), calls)",
    "calls = []\ndef f(v):\n    calls.append(v)\n    return v\n(f([2]) < f([1]) < f([3]), calls)",
    "d = {'k': [1]}\ns = {1, 2}\n"
    "([1] in d.values(), 'k' in d, 2 in s, [1] in [[0], [1]], 'a' in 'cat')",
    "a = [1, 2]\nb = (3,)\n({*a, *b, 4}, {**{'k': 1}, 'j': 2, **{'k': 3}}, {*'ab'})",
    "t = (1, [2])\n(t == (1, [2]), t < (1, [3]), (1, 2) in [(1, 2)], [t].index((1, [2])))",
    "x = 'ab'\ny = b'ab'\n(x == y, x < 'b', y in [b'ab'], 1 == 1.0, None == [])",
    "y = [5]\n((y := [6]) == y, y)",
    "a = list(range(5000))\nb = list(range(5000))\nb[3000] = -1\n"
    "(a == b, a < b, a > b, a[:4000] <= b, tuple(a) < tuple(b), tuple(b) <= tuple(a))",
    "a = [[i] for i in range(3000)]\nb = [[i] for i in range(3001)]\n"
    "(a < b, a == b[:-1], b > a, a != b, a[::-1] > b, tuple(a) == tuple(b))",
]


@pytest.mark.parametrize("source", HONEST)
def test_honest_comparisons_answer_as_cpython(source: str) -> None:
    expected = plain(source, n=2000)
    got = execute(source, Budget(time=10.0), n=2000)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("where", [0, 15, 16, 47, 48, 1007, 1008, 2031, 2032, 4999, None])
def test_long_lists_compared_a_chunk_at_a_time_answer_as_cpython(where: int | None) -> None:
    """Chunks of 16, 32, ... 1,024 items: a difference on each side of their edges, or none
    (then the lengths decide)."""
    a = [[i] for i in range(5000)]
    b = [[i] for i in range(5000)]
    if where is not None:
        b[where] = [-1]
    for left, right in ((a, b), (b, a), (a, b[:-7]), (a[:2500], b), (tuple(a), tuple(b))):
        source = "(a == b, a != b, a < b, a <= b, a > b, a >= b)"
        assert execute(source, a=left, b=right) == plain(source, a=left, b=right)


ERRORS = [
    "[1] < 'a'",
    "[1] < [[1]]",
    "{1: 2} < {1: 2}",
    "{**[1]}",
    "{**1, 'k': 2}",
    "{*1}",
    "max()",
    "max([])",
    "min(1, 2, default=3)",
    "max([1], key=5)",
    "sorted([1, 'a'])",
    "sorted([[1], ['a']])",
    "[[1]].index([2])",
    "[[1]].remove([2])",
    "[[2], [1]].sort(reverse='x')",
    "[[1]] in 5",
    "[1] in 5",
]


@pytest.mark.parametrize("source", ERRORS)
def test_errors_are_cpythons(source: str) -> None:
    with pytest.raises(Exception) as theirs:
        plain(source)
    with pytest.raises(Exception) as ours:
        execute(source)
    assert type(ours.value) is type(theirs.value)
    assert str(ours.value).split("\n")[0] == str(theirs.value)


# -- what the compiler knows of names -----------------------------------------------------------


def _guard_names(code: Any) -> set[str]:
    """The guard names a compiled request refers to, nested code objects included."""
    found = set(code.co_names)
    for constant in code.co_consts:
        if hasattr(constant, "co_names"):
            found |= _guard_names(constant)
    return found & {"_compare_", "_type_", "_chain_"}


KNOWN = {
    "[r for r in rows if lo <= r['age'] < hi and r['name'] != name]": {},
    "[r for r in rows if r['id'] in ids and r['tags'] == tags]": {},
    "ages = set(wanted)\nlimit = 3\n[r for r in rows if r['age'] in ages and r['id'] > limit]": {},
    "[r for r in rows if r['age'] in {1, 2} and r['tags'] == ['a', 'b'] and (1, 'a') != r]": {},
}
GUARDED = {
    "[r for r in rows if r['id'] != lo]": {"lo": [[1]]},  # a list of lists: may be walked
    "[r for r in rows if r['id'] in ids]": {"ids": list(range(2000))},  # too long to check
    "[r for r in rows if r['tags'] == tags]\ntags.append(1)": {},  # a list read elsewhere
    "lo = lo + 1\n[r for r in rows if r['id'] > lo]": {},  # rebound by the query
    "[r for r in rows if r['tags'] != lo or (lo := r['tags'])]": {},  # rebound by a walrus
    "s = set(wanted)\ns = wanted\n[r for r in rows if r['age'] in s]": {},  # a list too
    "ages = set(wanted)\n[r for r in rows if r['age'] in ages]": {"set": list},  # not the builtin
    "ages = {1}\n[r for r in rows if r['age'] in ages]": {"ages": [[1]]},  # the caller's first
}
PARAMETERS = {"rows": [], "lo": 1, "hi": 5, "name": "x", "ids": [1, 2], "tags": ["a"]}


@pytest.mark.parametrize("source", list(KNOWN) + list(GUARDED))
def test_comparisons_with_names_of_known_kinds_compile_plain(source: str) -> None:
    """A parameter that is a number, a text or a short flat list, never bound by the query,
    and a name the query binds only to literals or sets: their comparisons need no guard;
    anything else keeps it. The answers are CPython's either way."""
    names = {**PARAMETERS, "wanted": [1, 2], **KNOWN.get(source, {}), **GUARDED.get(source, {})}
    compiled = compile_request(source, "exec", names)
    assert bool(_guard_names(compiled.code)) == (source in GUARDED), compiled.assumes
    rows = [{"id": i, "age": i % 3, "name": "x", "tags": ["a", "b"]} for i in range(5)]
    names["rows"] = rows
    if "set" not in names:  # CPython has no guard of its own for a rebound builtin
        assert run(compiled, dict(names), FAST) == plain(source, **names)


def test_run_refuses_names_of_other_kinds_than_compiled_for() -> None:
    source = "[r for r in rows if r > limit]"
    compiled = compile_request(source, "eval", {"rows": [1, 5], "limit": 3})
    assert compiled.assumes == (("limit", "small", True),)
    assert run(compiled, {"rows": [1, 5], "limit": 3}, FAST) == [5]
    with pytest.raises(SecurityError, match="compiled for other parameters"):
        run(compiled, {"rows": [_dags()["a"]], "limit": _dags()["b"]}, FAST)
    inferred = compile_request("s = {1}\n[x in s for x in xs]", "exec", {"xs": [1]})
    assert inferred.assumes == (("s", "hashed", False),)  # a display: no builtin needed
    with pytest.raises(SecurityError, match="compiled for other parameters"):
        run(inferred, {"xs": [1], "s": [_dags()["a"]]}, FAST)  # the caller binds `s` after all
    # A comparison that runs once keeps its inline check: cheaper than knowing the kinds.
    assert compile_request("a < b", "eval", {"a": 1, "b": 2}).assumes == ()
    scope: dict[str, Any] = {}
    tags = ["a", "b"]
    check_assumptions((("tags", "flat", True),), scope, {"tags": tags})
    assert scope["tags"] == tags and scope["tags"] is not tags  # nothing else can grow it


def test_honest_records_of_a_store_compare_without_the_walk_costing_more_than_a_budget() -> None:
    """100,000 records, stored, against a parameter holding equal copies: CPython's answer
    under the default budget, the walk priced in C a level at a time."""
    records = [{"id": i, "name": f"user{i}", "age": i % 90} for i in range(100_000)]
    copies = [dict(record) for record in records]
    store = Store({"users": records})  # consumes `records`
    source = "(db['users'] == users, db['users'] != users[:-1], users[-1] in db['users'])"
    started = time.perf_counter()
    assert execute(source, Budget(), db=store.root, users=copies) == (True, True, True)
    assert time.perf_counter() - started < 5.0
