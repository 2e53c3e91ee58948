"""The sandbox: every rule, with an attempt to break it; the budgets; Python semantics kept.

Budgets are small (`FAST`) so that bombs end in about a second. The corpus of hostile inputs
(sandbox/corpus) is replayed at the end against `compile_request` + `run`, with the real store
for the cases whose refusal comes from its read-only mode.
"""

from __future__ import annotations

import ast
import builtins
import copy
import dataclasses
import importlib
import inspect
import operator
import pkgutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from corpus import SEED, load_corpus

from pyzdb.errors import QUERY_EXCEPTIONS, Error, LimitExceeded, SecurityError
from pyzdb.limits import QUERY_FILENAME
from pyzdb.sandbox import Budget, compile_request, run
from pyzdb.sandbox import compile as compiling
from pyzdb.sandbox.budget import activate
from pyzdb.sandbox.builtins import BUILTINS, GUARDED
from pyzdb.sandbox.checks import BASE_EXCEPTION_NAMES
from pyzdb.sandbox.pricing import MAX_TUPLE_DEPTH
from pyzdb.sandbox.request import GUARD_FILES, GUARD_MODULES, Request
from pyzdb.storage.store import Store
from pyzdb.values import File

FAST = Budget(time=1.0, steps=2_000_000, max_size=1_000_000, memory=256 * 2**20)


def query(source: str, budget: Budget = FAST, **names: object) -> object:
    return run(compile_request(source, "eval"), names, budget)


def execute(source: str, budget: Budget = FAST, **names: object) -> object:
    return run(compile_request(source, "exec"), names, budget)


def refused(source: str, mode: str = "exec") -> str:
    with pytest.raises(SecurityError) as caught:
        compile_request(source, mode)  # type: ignore[arg-type]
    return str(caught.value)


def fresh_store():
    return Store(copy.deepcopy(SEED))


# -- compile: deny by default ------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, why",
    [
        ("import os", "import"),
        ("from os import path", "import"),
        ("class A:\n    pass", "class"),
        ("@len\ndef f():\n    pass", "decorator"),
        ("global x\nx = 1", "global"),
        ("def f():\n    x = 1\n    def g():\n        nonlocal x", "nonlocal"),
        ("async def f():\n    pass", "async"),
        ("def g():\n    yield 1", "yield"),
        ("def g():\n    yield from []", "yield"),
        ("with x:\n    pass", "with"),
        ("try:\n    pass\nexcept* ValueError:\n    pass", "except*"),
        ("try:\n    pass\nexcept:\n    pass", "bare"),
        ("try:\n    pass\nfinally:\n    pass", "finally"),
        ("try:\n    pass\nexcept (ValueError, BaseException):\n    pass", "BaseException"),
        ("raise SystemExit", "SystemExit"),
        ("raise KeyboardInterrupt", "KeyboardInterrupt"),
        ("match x:\n    case dict():\n        pass", "class patterns"),
        ("match x:\n    case a.b:\n        pass", "literal"),
        ("match x:\n    case [*_rest]:\n        pass", "'_rest'"),
        ("x: int = 1", "annotation"),
        ("def f(x: int):\n    pass", "annotation"),
        ("def f() -> int:\n    pass", "annotation"),
        ("x.y = 1", "assigning"),
        ("del x.y", "assigning"),
        ("x.y += 1", "assigning"),
        ("x.__class__", "'_'"),
        ("x._parent", "'_'"),
        ("x.gi_frame", "not available"),
        ("x.f_back", "not available"),
        ("x.mro()", "not available"),
        ("_getattr_", "'_'"),
        ("__builtins__", "'_'"),
        ("def f(_write_=None, /):\n    pass", "'_write_'"),
        ("def f(*, _getiter_=None):\n    pass", "'_getiter_'"),
        ("lambda _getattr_: 0", "'_getattr_'"),
        ("def f(*_apply_):\n    pass", "'_apply_'"),
        ("def _f():\n    pass", "'_f'"),
        ("try:\n    pass\nexcept ValueError as _e:\n    pass", "'_e'"),
        ("[_x for _x in y]", "'_x'"),
        ("print(1)", "reserved"),
        ("getattr(x, 'y')", "getattr"),
        ("id(x)", "id()"),
        ("hash(x)", "hash()"),
        ("eval('1')", "eval"),
        ("exec('1')", "exec"),
        ("open('f')", "open"),
        ("vars()", "vars"),
        ("[x async for x in y]", "async"),
        ("a, l[0:0] = 1, it", "slice assignment"),
        ("for l[:1] in it:\n    pass", "slice assignment"),
        ("[0 for l[:1] in it]", "slice assignment"),
    ],
)
def test_compile_refuses(source: str, why: str) -> None:
    assert why in refused(source)


def test_every_violation_is_listed_with_its_line() -> None:
    message = refused("x = 1\nimport os\ny = x.__class__\nclass A:\n    pass")
    assert "line 2:" in message and "line 3:" in message and "line 4:" in message


def test_unicode_lookalikes_are_normalised_before_the_rules() -> None:
    assert "eval" in refused("\uff45\uff56\uff41\uff4c('1')", "eval")
    assert "'_'" in refused("__\uff49\uff4d\uff50\uff4f\uff52\uff54__('os')", "eval")
    assert "'_'" in refused("x.__\uff43\uff4c\uff41\uff53\uff53__", "eval")


def test_source_caps() -> None:
    assert "65536" in refused("1 + " * 20000 + "1", "eval")
    assert "nested more than" in refused("[" * 150 + "]" * 150, "eval")
    assert "syntax nodes" in refused("[" + ",".join(["x"] * 30000) + "]", "eval")
    assert "too deeply" in refused("-" * 30000 + "1", "eval")


@pytest.mark.parametrize(
    "source",
    [
        "db[",
        "1 +\x00 1",
        "'\ud800'",
        "(" * 1000 + ")" * 1000,
        "db['x'] = 1",
        "return 5",
        "1" * 10000,
    ],
)
def test_bad_text_is_a_syntax_error(source: str) -> None:
    mode = "exec" if source == "return 5" else "eval"
    with pytest.raises(SyntaxError):
        compile_request(source, mode)  # type: ignore[arg-type]


def test_compile_rejects_wrong_argument_types() -> None:
    with pytest.raises(TypeError):
        compile_request(ast.parse("1", mode="eval"), "eval")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        compile_request("1", "single")  # type: ignore[arg-type]


def test_compile_cache_hit() -> None:
    source = "len(db) + 12345"
    before = compiling._compile.cache_info().hits
    first = compile_request(source, "eval")
    assert compile_request(source, "eval") is first
    assert compiling._compile.cache_info().hits == before + 1
    assert compile_request(source, "exec") is not first


# -- attributes, items, writes -------------------------------------------------------------------


def test_methods_of_data_types_work() -> None:
    assert query(
        "d.get('a'), sorted(d.keys()), l.index(2), s.upper()", d={"a": 1}, l=[1, 2], s="x"
    ) == (1, ["a"], 1, "X")


def test_no_attribute_of_type_objects_functions_or_modules() -> None:
    for source in (
        "list.append(l, 1)",
        "dict.get(d, 'a')",
        "len.count",
        "str.upper('x')",
        "(lambda: 0).count",
    ):
        with pytest.raises(SecurityError):
            query(source, l=[1], d={"a": 1})


@pytest.mark.parametrize(
    "source",
    ["[].upper", "x.append", "d.keys().upper", "(1).upper", "d.items().count", "zip([]).count"],
)
def test_missing_attribute_of_a_data_type_is_an_attribute_error(source: str) -> None:
    with pytest.raises(AttributeError):
        query(source, x=None, d={})


def test_mutating_methods_are_bound_to_the_instance() -> None:
    assert execute("l.append(4)\nd.update(b=2)\nl.extend(range(2))\n[l, d]", l=[1], d={"a": 1}) == [
        [1, 4, 0, 1],
        {"a": 1, "b": 2},
    ]


def test_write_guard_only_hands_out_dicts_and_lists() -> None:
    with pytest.raises(TypeError):
        execute("t = (1,)\nt[0] = 2")
    with pytest.raises(SecurityError):
        execute("f = lambda: 0\nf[0] = 1")


def test_slice_assignment_takes_lists_only() -> None:
    assert execute("l = [1, 2, 3]\nl[::2] = 'ab'\nl[1:2] = m = (7, 8)\n[l, m]") == [
        ["a", 7, 8, "b"],
        (7, 8),
    ]
    with pytest.raises(SecurityError):
        execute("d = {}\nd[0:1] = [1]")


def test_file_attributes() -> None:
    file = File(digest="ab" * 32, name="x.txt", size=3)
    assert query("(f.name, f.size, f.digest[:4])", f=file) == ("x.txt", 3, "abab")
    assert "not available" in refused("f.data", "eval")
    with pytest.raises(AttributeError):
        query("f.count", f=file)


def test_names_must_not_shadow_guards() -> None:
    with pytest.raises(SecurityError):
        run(compile_request("1", "eval"), {"_getattr_": len}, FAST)


def test_stored_containers_refuse_writes_in_a_query() -> None:
    store = fresh_store()
    store.begin()
    store.writable = False
    for source in ("db['l'].append(1)", "db.clear()", "(l := db['l']).extend([9])"):
        with pytest.raises(SecurityError) as caught:
            query(source, db=store.root)
        assert caught.value.pyzdb_line == 1
    store.rollback()
    assert store.snapshot() == SEED


def test_augmented_item_assignment() -> None:
    db = {"c": 1, "a": {"b": 5}, "l": [1, 2, 3]}
    execute("db['c'] += 1\ndb['a']['b'] -= 2\ndb['l'][1] *= 10\ndb['l'][0:1] += [7]", db=db)
    assert db == {"c": 2, "a": {"b": 3}, "l": [1, 7, 20, 3]}


def test_augmented_item_assignment_evaluates_container_and_key_once() -> None:
    calls = []

    def counted(value):
        calls.append(value)
        return value

    d = {"k": 1}
    execute("f(d)[f('k')] += 1", f=counted, d=d)
    assert d == {"k": 2} and calls == [d, "k"]


def test_inplace_on_a_stored_list_goes_through_its_methods() -> None:
    store = fresh_store()
    store.begin()
    execute("db['l'] += [4]\nl = db['l']\nl += [5]\nl *= 2\ndb['d'] |= {'c': 3}", db=store.root)
    effects = store.commit("t")
    assert store.snapshot()["l"] == [1, 2, 3, 4, 5] * 2
    assert store.snapshot()["d"] == {"a": 1, "b": 2, "c": 3}
    assert not any(effect[0] == "set" and effect[2] in ("l", "d") for effect in effects)


# -- exec results, fresh globals ----------------------------------------------------------------


@pytest.mark.parametrize(
    "source, value",
    [
        ("x = 1\nx + 1", 2),
        ("x = 1", None),
        ("x = 1\nx\ny = 2", None),  # as in IPython: only a last expression is returned
        ("for i in range(3):\n    i\n7", 7),
        ("if True:\n    5", None),
        ("'doc'", "doc"),
    ],
)
def test_exec_returns_the_last_top_level_expression(source: str, value: object) -> None:
    assert execute(source) == value


def test_fresh_globals_per_request() -> None:
    execute("len = lambda x: 5\nsorted = None")
    assert query("len([1]), sorted([2, 1])") == (1, [1, 2])
    compiled = compile_request("counter = counter + 1 if counter else 1\ncounter", "exec")
    assert run(compiled, {"counter": 0}, FAST) == 1
    assert run(compiled, {"counter": 0}, FAST) == 1


# -- errors at the boundary --------------------------------------------------------------------

needs_positions = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="columns come from co_positions (Python 3.11+)"
)


@needs_positions
def test_query_exceptions_keep_type_args_and_get_a_note() -> None:
    with pytest.raises(KeyError) as caught:
        execute("x = 1\ny = {'a': 1}\nz = y['missing']", budget=FAST)
    error = caught.value
    assert error.args == ("missing",)
    assert (error.pyzdb_line, error.pyzdb_column) == (3, 5)
    assert error.__notes__ == ["query line 3, column 5: z = y['missing']"]
    assert error.__traceback__ is None or all(
        frame.tb_frame.f_code.co_filename != QUERY_FILENAME
        for frame in _walk_tb(error.__traceback__)
    )


def _walk_tb(tb):
    while tb is not None:
        yield tb
        tb = tb.tb_next


@needs_positions
def test_note_columns_count_characters_not_bytes() -> None:
    with pytest.raises(ZeroDivisionError) as caught:
        query("'ééé' + str(1 / 0)")
    assert caught.value.pyzdb_column == 13  # the 13th character; the 16th byte


def test_error_args_are_bounded_and_show_no_addresses() -> None:
    with pytest.raises(KeyError) as caught:
        query("{}[s]", s="k" * 10_000)
    assert len(caught.value.args[0]) < 2100
    with pytest.raises(ValueError) as caught:
        query("f()", f=lambda: (_ for _ in ()).throw(ValueError(len, [len] * 10**6)))
    assert "0x" not in str(caught.value)


@pytest.mark.parametrize(
    "exc, expected",
    [
        (SystemExit(1), Error),
        (KeyboardInterrupt(), Error),
        (GeneratorExit(), Error),
        (MemoryError(), LimitExceeded),
        (RecursionError("deep"), RecursionError),
        (SecurityError("refused"), SecurityError),
    ],
)
def test_nothing_but_exceptions_escape(exc: BaseException, expected: type) -> None:
    def boom():
        raise exc

    with pytest.raises(expected) as caught:
        query("boom()", boom=boom)
    assert caught.value.pyzdb_line == 1
    if expected is LimitExceeded:
        assert caught.value.budget == "memory"


def test_pyzdb_errors_pass_through_unchanged() -> None:
    error = SecurityError("the store said no")

    def boom():
        raise error

    with pytest.raises(SecurityError) as caught:
        query("boom()", boom=boom)
    assert caught.value is error


# -- the time budget ----------------------------------------------------------------------------

STICKY = (
    "while True:\n    try:\n        while True:\n            pass\n"
    "    except Exception:\n        pass"
)
SWALLOW_BY_NAMEERROR = (
    "while True:\n    try:\n        try:\n            while True:\n"
    "                pass\n        except Undefined:\n            pass\n"
    "    except Exception:\n        pass"
)
SHORT = Budget(time=0.3, steps=2_000_000, max_size=1_000_000)


@pytest.mark.parametrize(
    "source",
    [STICKY, SWALLOW_BY_NAMEERROR, "while True:\n    pass", "x = 0\nwhile True:\n    x += 1"],
)
def test_deadline_is_sticky(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(LimitExceeded) as caught:
        execute(source, budget=SHORT)
    assert caught.value.budget == "time"
    assert time.monotonic() - started < 2
    assert caught.value.pyzdb_line is not None


def test_deadline_interrupts_big_int_arithmetic() -> None:
    started = time.monotonic()
    with pytest.raises(LimitExceeded):
        execute(
            "x = 1 << 7_000_000\ny = (1 << 3_500_000) + 1\nwhile True:\n    x // y",
            budget=Budget(time=0.3, max_size=1_000_000),
        )
    assert time.monotonic() - started < 2


def test_deadline_outside_the_main_thread_uses_the_watchdog() -> None:
    outcome: list[BaseException | None] = []

    def worker() -> None:
        try:
            execute(STICKY, budget=SHORT)
            outcome.append(None)
        except BaseException as exc:  # whatever it is, the test wants it
            outcome.append(exc)
        outcome.append(query("1 + 1", budget=SHORT))  # type: ignore[arg-type]

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome[0], LimitExceeded) and outcome[0].budget == "time"
    assert outcome[1] == 2


def test_signal_handler_and_timer_are_restored() -> None:
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *args: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        assert query("1 + 1") == 2
        with pytest.raises(LimitExceeded):
            execute("while True:\n    pass", budget=Budget(time=0.1))
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] < 0.5
        time.sleep(0.6)
        assert fired == [1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_recursion_limit_gives_recursion_error_and_is_restored() -> None:
    limit = sys.getrecursionlimit()
    with pytest.raises(RecursionError) as caught:
        execute("def f(n):\n    return f(n + 1)\nf(0)")
    assert caught.value.pyzdb_line == 2
    with pytest.raises(RecursionError):
        execute("def f(n):\n    return list(map(f, [n]))\nf(0)")
    assert sys.getrecursionlimit() == limit
    assert execute("def f(n):\n    return n if n == 0 else f(n - 1)\nf(200)") == 0


#: One C call that runs for many seconds and is not priced (sandbox/README.md, residual
#: risks): set() compares each tuple with every one before it that shares its hash, and each
#: comparison walks the 2**21 paths of two equal sub-tuples before the last elements differ.
STUCK_IN_C = (
    "items = []\nfor c in range(40):\n    t = (1,)\n    for i in range(21):\n        t = (t, t)\n"
    "    items.append((t, c * (2**61 - 1)))\nlen(set(items))"
)


def test_hard_kill_ends_a_process_stuck_in_c() -> None:
    code = (
        "from pyzdb.sandbox import compile_request, run, Budget\n"
        f"run(compile_request({STUCK_IN_C!r}, 'exec'), {{}}, Budget(time=0.3, kill_after=0.3))\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert result.returncode == 1 and time.monotonic() - started < 20
    assert b"<query>" in result.stderr


# -- the steps budget --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "sum(range(10**12))",
        "sorted(range(10**9))",
        "max(range(10**12))",
        "list(range(10**10))",
        "any(iter(int, 1))",
        "-1 in iter(int, 1)",
        "next(filter(None, iter(int, 1)))",
        "[*iter(int, 1)]",
        "max(*iter(int, 1))",
        "set().union(iter(int, 1))",
        "dict(zip(iter(int, 1), iter(int, 1)))",
        "sorted(iter(int, 1))",
    ],
)
def test_c_loops_are_bounded(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(LimitExceeded) as caught:
        query(source, budget=Budget(time=5, steps=200_000, max_size=1_000_000))
    assert caught.value.budget in ("steps", "size")
    assert time.monotonic() - started < 2


def test_steps_count_only_what_is_taken() -> None:
    budget = Budget(steps=100_000)
    assert (
        execute(
            "n = 0\nfor _ in range(5000):\n    for i in iter(int, 1):\n        n += 1\n"
            "        break\nn",
            budget=budget,
        )
        == 5000
    )
    with pytest.raises(LimitExceeded):
        execute("n = 0\nfor i in iter(int, 1):\n    n += 1", budget=budget)


def test_steps_are_shared_by_every_loop() -> None:
    with pytest.raises(LimitExceeded) as caught:
        execute("for _ in range(100):\n    sum(range(10_000))", budget=Budget(steps=500_000))
    assert caught.value.budget == "steps"


# -- the size budget ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "'x' * 10**12",
        "10**12 * 'x'",
        "[0] * 10**10",
        "(1,) * 10**10",
        "10**10**10",
        "4000000**4000000",
        "1 << 10**10",
        "s * n",
        "n * s",
        "b'x' * n",
        "'%*d' % (10**9, 1)",
        "'%999999999d' % 1",
        "fmt % 1",
        "f'{1:>{10**9}}'",
        "f'{1.0:.999999999f}'",
        "f'{s}{s}'",
        "'x'.join([s] * 3)",
        "s.replace('', s)",
        "s.center(10**9)",
        "s.ljust(10**9)",
        "s.rjust(10**9)",
        "s.zfill(10**9)",
        "('\\t' * 1000).expandtabs(10**6)",
        "bytes(10**9)",
        "hex(1 << 7_999_000)",
        "round(5, -10**9)",
        "str([s] * 3)",
        "repr([s] * 3)",
        "sum([[0] * 999_999] * 3, [])",
        "'%s%s' % (s, s)",
        "'%(a)s%(a)s' % {'a': s}",
    ],
)
def test_huge_objects_are_priced_before_they_are_built(source: str) -> None:
    with pytest.raises(LimitExceeded) as caught:
        query(source, s="x" * 600_000, n=10**9, fmt="%999999999d")
    assert caught.value.budget == "size"


@pytest.mark.parametrize(
    "source",
    [
        "a, *b = iter(int, 1)",
        "l = []\nl[0:0] = iter(int, 1)",
        "l = []\nl.extend(iter(int, 1))",
        "l = []\nl += iter(int, 1)",
        "d = {}\nd.update(zip(iter(int, 1), iter(int, 1)))",
        "x = 'x' * 600_000\nx += x",
        "l = [0] * 600_000\nl *= 2",
        "n = 2\nn **= 10**9",
        "n = 1\nn <<= 10**9",
    ],
)
def test_statements_that_build_in_c_are_bounded(source: str) -> None:
    with pytest.raises(LimitExceeded):
        execute(source)


def test_memory_budget_stops_bytecode_allocation_loops() -> None:
    with pytest.raises(LimitExceeded) as caught:
        execute(
            "l = []\nwhile True:\n    l.append('x' * 100_000 + str(len(l)))",
            budget=Budget(time=10, memory=64 * 2**20),
        )
    assert caught.value.budget == "memory"


def test_text_of_shared_structures_is_priced() -> None:
    with pytest.raises(LimitExceeded):
        execute("a = [1]\nfor i in range(60):\n    a = [a, a]\nf'{a}'")


# -- tuples --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        "t = (t,)",
        "t = next(iter({0: t}.items()))",
        "t = list(zip([t]))[0]",
        "t = list(enumerate([t]))[0]",
        "t = pack(t)",
        "t = tuple([t])",
        "t = {0: t}.popitem()",
        "t = (*[t],)",
    ],
)
def test_tuples_cannot_nest_deep_enough_to_crash_hashing(build: str) -> None:
    source = (
        f"pack = lambda *a: a\nt = 0\nfor i in range({MAX_TUPLE_DEPTH + 10}):\n    {build}\n{{t}}"
    )
    with pytest.raises(SecurityError) as caught:
        execute(source)
    assert "nested" in str(caught.value)


def test_shared_tuples_cannot_expand_past_the_size_budget() -> None:
    with pytest.raises(LimitExceeded):
        execute("t = (1,)\nfor i in range(64):\n    t = (t, t)\n{t}")


def test_ordinary_tuples_are_cheap_and_unchanged() -> None:
    assert execute("t = ((1, 2), (3, (4, 5)))\nd = {t: 1, (t, t): 2}\n[d[t], d[(t, t)], t]") == [
        1,
        2,
        ((1, 2), (3, (4, 5))),
    ]


# -- reprs leak no addresses -------------------------------------------------------------------


def test_text_of_functions_has_no_address() -> None:
    text = query("[repr(len), str(lambda: 0), f'{sorted}', '%s' % (len,)]")
    assert all("0x" not in part for part in text)  # type: ignore[union-attr]


# -- the fast paths keep Python semantics ------------------------------------------------------

DATA = {
    "l": list(range(20)),
    "s": "Hello, World",
    "f": 2.5,
    "b": b"bytes",
    "t": (1, (2, 3)),
    "d": {"a": 1, "b": 2, "c": 3},
    "users": [{"name": "ann", "age": 31}, {"name": "bob", "age": 25}, {"name": "cy", "age": 40}],
}

EXPRESSIONS = [
    "[v*v for v in db['l'] if v % 2]",
    "sorted(db['users'], key=lambda u: u['age'])[:2]",
    "sorted(db['users'], key=lambda u: (u['age'], u['name']), reverse=True)",
    "db['l'][::3], db['l'][-3:], db['l'][2:10:2], db['s'][::-1]",
    "[(a, b) for a, (b, c) in [(1, (2, 3)), (4, (5, 6))]]",
    "[y for x in db['l'] if (y := x * 3) > 40]",
    "(lambda f: f(f, 5))(lambda self, n: 1 if n <= 1 else n * self(self, n - 1))",
    "(lambda x: lambda y: x + y)(3)(4)",
    "(lambda *a, **k: (a, k))(1, (2,), x=3), (lambda a, b=2, *, c=3: a + b + c)(1, c=10)",
    "db['s'].lower().split(', '), '-'.join(str(i) for i in range(5))",
    "{k: v * 2 for k, v in db['d'].items()}, list(db['d'].items()), db['d'].get('z', 0)",
    "sum(u['age'] for u in db['users']) / len(db['users'])",
    "max(db['users'], key=lambda u: u['age'])['name'], min([], default=None), max(3, 4)",
    "any(v > 18 for v in db['l']), all(v >= 0 for v in db['l'])",
    "list(enumerate('abc', 1)), list(zip('ab', [1, 2])), dict(zip('ab', [1, 2]))",
    "list(map(lambda x: x + 1, [1, 2])), list(filter(None, [0, 1])), list(reversed([1, 2]))",
    'f\'{db["s"]!r:>20}|{db["f"]:.3f}|{42:08b}|{db["s"]=}|{db["l"][:2]}\'',
    "'%s has %d items (%.2f%%)' % ('x', 3, 12.345), '%(a)s-%(b)s' % {'a': 1, 'b': 2}",
    "db['s'] * 2, 3 * [0], (1, 2) * 2, 2 ** 10, 2 ** 0.5, 1 << 5, 7 % 3, 7.5 % 2, -7 // 2",
    "db['f'] * 2, db['f'] % 2, db['f'] ** 2, db['l'][3] * db['l'][4], db['t'] * 2",
    "divmod(17, 5), abs(-3), round(2.675, 2), round(1234, -2), int('42'), float('1.5')",
    "hex(255), bin(5), oct(8), chr(65), ord('A'), str(12), repr('x'), bool([])",
    "isinstance(db['l'], list), isinstance(3, (int, float)), isinstance('x', dict)",
    "tuple(db['l'][:3]), list('ab'), sorted(set('aab')), frozenset([1]), bytes(3), bytes([65])",
    "db['t'][1][0], len(db['t']), db['t'].index(1), db['b'].decode(), db['s'].encode()",
    "[x for x in range(10) if x % 3 == 0], list(range(2, 10, 3)), range(5)[2]",
    "sorted({x % 3 for x in range(10)}), [*range(3), *'xy'], dict(a=1, **{'b': 2})",
    "{**db['d'], 'z': 0}, next(iter([1, 2])), next(iter([]), 'default')",
    "db['s'].replace('l', 'L'), db['s'].center(20, '*'), db['s'].zfill(15), 'a\\tb'.expandtabs(4)",
    "db['s'].find('o'), db['s'].startswith(('He', 'x')), db['s'].partition(',')",
    "sum([[1], [2, 3]], []), sum([(1,), (2,)], ()), sum([0.1] * 10), sum(range(5000))",
    "str(db['d']), repr(db['l'][:3]), str(None), str(b'x'), repr(db['t']), str(1.5)",
    "{(1, 2): 'a', (3, (4, 5)): 'b'}[(3, (4, 5))], (1, 2) < (1, 3), 'a' in db['d']",
    "list(zip(*[[1, 2], [3, 4]])), [[0] * 3 for _ in range(2)], 3 .bit_length()",
]

STATEMENTS = [
    "x = 0\nfor i in range(10):\n    x += i\nx",
    "out = []\nfor k, v in sorted(db['d'].items()):\n    out.append(f'{k}={v}')\nout",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nfib(15)",
    "a, *b = [1, 2, 3]\n(c, d), e = (1, 2), 3\nfirst, *middle, last = range(5)\n[a, b, c, middle]",
    "for a, *rest in [[1, 2, 3], [4]]:\n    pass\n[a, rest]",
    "l = [1]\nl += [2]\nl *= 2\ns = {1}\ns |= {2}\nd = {}\nd |= {'a': 1}\nt = (1,)\nt += (2,)\n"
    "[l, s, d, t]",
    "st = 'a'\nst *= 3\nst += 'b'\nx = 2.5\nx *= 2\nx -= 1\nn = 7\nn %= 3\nn **= 3\nn <<= 2\n"
    "[st, x, n]",
    "try:\n    {}['x']\nexcept KeyError as e:\n    r = str(e)\nr",
    "try:\n    1 / 0\nexcept (ValueError, ZeroDivisionError):\n    r = 1\nelse:\n    r = 2\nr",
    "match db['t']:\n    case (1, (a, b)):\n        r = a + b\n    case _:\n        r = 0\nr",
    "match {'k': 1, 'z': 2}:\n    case {'k': 1, **rest}:\n        r = rest\nr",
    "match 5:\n    case 1 | 2:\n        r = 'small'\n    case [*_]:\n        r = 'seq'\n"
    "    case n:\n        r = n\nr",
    "i = 0\nwhile i < 5:\n    i += 1\n    if i == 3:\n        break\ni",
    "l = [0, 1, 2, 3]\nl[1:3] = [9]\ndel l[0]\na = b = [5]\nl[0:0] = c = (7,)\n[l, a, b, c]",
    "d = {'c': 1}\nd['c'] += 1\nd['n'] = {'m': [1]}\nd['n']['m'][0] -= 5\nd['n']['m'] += [2]\nd",
    "def f(*args, **kw):\n    return args, kw\nf(1, *[2, 3], k=4, **{'j': 5})",
    "r = [x for x in db['l']]\nr.sort(reverse=True)\nr.reverse()\n"
    "[r.pop(), r.insert(0, 99), r[:2]]",
]


def _plain(source: str, mode: str, root: object) -> object:
    scope = {"db": root}
    if mode == "eval":
        return eval(source, scope)  # the reference the sandbox is compared with
    tree = ast.parse(source)
    last = max((i for i, s in enumerate(tree.body) if isinstance(s, ast.Expr)), default=None)
    if last is not None:
        value = tree.body[last].value  # type: ignore[attr-defined]
        tree.body[last] = ast.Assign([ast.Name("result", ast.Store())], value)
        ast.fix_missing_locations(tree)
    exec(compile(tree, "<plain>", "exec"), scope)
    return scope.get("result")


@pytest.mark.parametrize(
    "source, mode", [(s, "eval") for s in EXPRESSIONS] + [(s, "exec") for s in STATEMENTS]
)
def test_same_results_as_plain_python(source: str, mode: str) -> None:
    expected = _plain(source, mode, copy.deepcopy(DATA))
    got = run(
        compile_request(source, mode),
        {"db": copy.deepcopy(DATA)},  # type: ignore[arg-type]
        Budget(),
    )
    assert got == expected and repr(got) == repr(expected)


def test_dict_items_result_is_a_real_view() -> None:
    assert type(query("d.items()", d={"a": 1})) is type({}.items())


# -- the guarded builtins answer as CPython's own ----------------------------------------------
#
# Each wrapper of `pyzdb.sandbox.builtins.GUARDED` stands for CPython's builtin of the same name
# (its fast twin, which it calls once the input is bounded). Within the budget both must give
# the same value, or raise the same exception type, on the same inputs. Refusals (a codec off
# the list, `<function>` for a non-data repr) are the sandbox's own rules, tested above.


def _case(name: str, *args: Any, **kwargs: Any) -> tuple[str, Callable[[], Any]]:
    """(name, a factory of fresh (args, kwargs)): iterators are consumed by one call."""
    return name, lambda: (args, kwargs)


def _fresh(name: str, factory: Callable[[], tuple[Any, ...]]) -> tuple[str, Callable[[], Any]]:
    return name, lambda: (factory(), {})


GUARDED_CASES = [
    _case("sorted", [3, 1, 2]),
    _case("sorted", "bca", reverse=True),
    _case("sorted", {3: "a", 1: "b"}, key=lambda k: -k),
    _case("sorted", [1, "a"]),
    _fresh("sorted", lambda: (iter([2, 1]),)),
    _case("sum", [1, 2, 3]),
    _case("sum", [1.5, 2], 10),
    _case("sum", [[1], [2, 3]], []),
    _case("sum", [(1,), (2,)], ()),
    _case("sum", [[1], (2,)], []),
    _case("sum", ["a"]),
    _case("sum", [], ""),
    _case("sum", range(3000)),
    _fresh("sum", lambda: (iter(range(5)),)),
    _case("min", [3, 1, 2]),
    _case("min", 3, 1, 2),
    _case("min", [1, -3], key=abs),
    _case("min", []),
    _case("min", [], default=7),
    _case("max", "bca"),
    _case("max", 3, 1, 2),
    _case("max", [1, -3], key=abs),
    _fresh("max", lambda: (iter([4, 9, 2]),)),
    _case("any", [0, 0, 1]),
    _case("any", []),
    _fresh("any", lambda: (iter([0, ""]),)),
    _case("all", [1, 1, 0]),
    _case("all", ()),
    _case("enumerate", "abc"),
    _case("enumerate", "abc", 5),
    _case("enumerate", 5),
    _case("zip", [1, 2], [3, 4]),
    _case("zip", [1, 2], "x"),
    _case("zip", [1, 2], [3], strict=True),
    _case("zip"),
    _case("map", abs, [-1, 2]),
    _case("map", operator.add, [1, 2], [3, 4, 5]),
    _case("map", abs, 5),
    _case("filter", None, [0, 1, 2]),
    _case("filter", str.isdigit, "a1b2"),
    _case("iter", [1, 2]),
    _fresh("iter", lambda: (iter([1, 2]),)),
    _fresh("iter", lambda: (iter([1, 2, 0, 5]).__next__, 0)),
    _case("iter", 5),
    _case("list"),
    _case("list", "abc"),
    _case("list", {1: 2}),
    _case("list", range(4)),
    _case("tuple", [1, [2]]),
    _case("tuple", "ab"),
    _case("set", [1, 1, 2]),
    _case("set", [[1]]),
    _case("frozenset", "aab"),
    _case("dict", [(1, 2)]),
    _case("dict", {1: 2}, b=3),
    _case("dict", a=1),
    _case("dict", [1]),
    _case("bytes"),
    _case("bytes", 3),
    _case("bytes", [65, 66]),
    _case("bytes", b"ab"),
    _case("bytes", "é", "utf-8"),
    _case("bytes", "é", "ascii", "replace"),
    _case("bytes", -1),
    _case("str"),
    _case("str", 12),
    _case("str", [1, "a", (2.5, None)]),
    _case("str", b"\xc3\xa9", "utf-8"),
    _case("str", b"\xff", "utf-8"),
    _case("repr", "a'b"),
    _case("repr", {1: [b"x", 2j]}),
    _case("range", 5),
    _case("range", 1, 10, 3),
    _case("range", 1.5),
    _case("range", 0),
    _case("int"),
    _case("int", "12"),
    _case("int", "ff", 16),
    _case("int", 3.9),
    _case("int", "x"),
    _case("round", 2.567, 2),
    _case("round", 1234, -2),
    _case("round", 5),
    _case("round", 2.5),
    _case("bin", 10),
    _case("oct", -3),
    _case("hex", 255),
    _case("hex", 2.0),
    _case("isinstance", 1, int),
    _case("isinstance", [1], (list, tuple)),
    _case("isinstance", "a", (int, bytes)),
    _case("isinstance", True, int),
    _case("isinstance", range(2), range),
    _case("isinstance", {}, dict),
]


def _outcome(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """What a call gives, comparable across the two twins: iterators are drained."""
    try:
        value = function(*args, **kwargs)
        if isinstance(value, (map, filter, zip, enumerate)) or hasattr(value, "__next__"):
            value = list(value)
    except Exception as exc:  # the type is what must match
        return ("raised", type(exc))
    return ("returned", type(value), value)


@pytest.mark.parametrize(("name", "arguments"), GUARDED_CASES, ids=[n for n, _ in GUARDED_CASES])
def test_each_guarded_builtin_answers_as_cpythons_own(name: str, arguments: Any) -> None:
    request = Request(FAST)
    previous = activate(request)
    try:
        args, kwargs = arguments()
        stand_ins = {cls: GUARDED[cls.__name__] for cls in (int, list, tuple, dict, bytes, range)}
        if name == "isinstance":  # a query names the wrapper; isinstance sees the real type
            info = args[1]
            args = (
                args[0],
                tuple(map(stand_ins.get, info)) if type(info) is tuple else stand_ins[info],
            )
        guarded = _outcome(GUARDED[name], args, kwargs)
    finally:
        activate(previous)
    plain = _outcome(getattr(builtins, name), *arguments())
    if plain[0] == "returned" and plain[1] in (map, filter, zip, enumerate):
        plain = ("returned", list, plain[2])
    if guarded[0] == "returned" and guarded[1] is not plain[1] and type(plain[2]) is list:
        guarded = ("returned", list, guarded[2])  # an iterator drained either way
    assert guarded == plain
    assert GUARDED[name].__name__ == name  # error messages name the builtin


def test_every_guarded_builtin_has_equivalence_cases() -> None:
    assert {name for name, _ in GUARDED_CASES} == set(GUARDED)
    assert all(hasattr(builtins, name) for name in GUARDED)


# -- one home for each fact ----------------------------------------------------------------------


def test_query_exceptions_have_one_home() -> None:
    table = {
        name
        for name, value in BUILTINS.items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert table == set(QUERY_EXCEPTIONS)
    assert {"BaseException", "SystemExit", "KeyboardInterrupt", "GeneratorExit"} <= set(
        BASE_EXCEPTION_NAMES
    )
    assert not BASE_EXCEPTION_NAMES & set(QUERY_EXCEPTIONS)
    for name in QUERY_EXCEPTIONS:
        assert query(f"type({name}('x')) is {name}")
        assert execute(f"try:\n    raise {name}('x')\nexcept {name}:\n    r = 1\nr") == 1


def test_the_tick_may_stop_in_every_guard_module_and_no_other() -> None:
    import pyzdb.sandbox as package

    modules = {f"pyzdb.sandbox.{info.name}" for info in pkgutil.iter_modules(package.__path__)}
    # Run time, but not on the request's own state (stdlib frames, or no guard at all).
    not_guards = {
        f"pyzdb.sandbox.{name}"
        for name in (
            "annotate",
            "checks",
            "compile",
            "idioms",
            "operands",
            "policy",
            "rewrites",
            "rules",
            "runner",
            "strformat",
            "timers",
        )
    }
    assert modules == set(GUARD_MODULES) | not_guards  # a new module needs a decision here
    for name in GUARD_MODULES:
        defined = [
            value
            for value in vars(importlib.import_module(name)).values()
            if getattr(value, "__module__", None) == name
        ]
        functions = [value for value in defined if inspect.isfunction(value)]
        for cls in filter(inspect.isclass, defined):
            functions += [value for value in vars(cls).values() if inspect.isfunction(value)]
        assert functions
        for function in functions:
            filename = function.__code__.co_filename
            if filename not in ("<string>", dataclasses.__file__):  # not a dataclass's own code
                assert filename in GUARD_FILES


def test_rules_do_not_depend_on_what_was_imported() -> None:
    code = (
        "import sys, pyzdb\n"
        "before = pyzdb.sandbox_rules()\n"
        "assert not any(m.startswith('RestrictedPython') for m in sys.modules)\n"
        "from pyzdb.sandbox import compile_request, run\n"
        "assert pyzdb.sandbox_rules() == before\n"
        "builtins = before.split('Builtins:')[1].split('Methods')[0].split()\n"
        "assert 'sorted' in builtins and 'open' not in builtins and '_name_of_' not in builtins\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- the corpus ----------------------------------------------------------------------------------

CORPUS = load_corpus()
#: Cases refused by the engine's result budget are replayed through whole databases by
#: tests/test_hostile.py; this file replays the rest against the sandbox alone.
SANDBOX_CASES = [case for case in CORPUS if case.requires != "engine"]


def test_corpus_is_large_and_covers_every_outcome() -> None:
    assert len(CORPUS) >= 70
    assert {case.expect for case in CORPUS} >= {
        "SecurityError",
        "LimitExceeded",
        "SyntaxError",
        "RecursionError",
    }


@pytest.mark.parametrize("case", SANDBOX_CASES, ids=[case.name for case in SANDBOX_CASES])
def test_corpus_case_is_refused(case) -> None:
    store = None
    if case.requires == "store":
        store = fresh_store()
        store.begin()
        store.writable = case.mode == "execute"
        root: object = store.root
    else:
        root = copy.deepcopy(SEED)
    started = time.monotonic()
    with pytest.raises(Exception) as caught:  # the type is checked by name
        run(compile_request(case.source, case.syntax), {"db": root}, FAST)
    assert type(caught.value).__name__ == case.expect, caught.value
    assert time.monotonic() - started < 5
    if store is not None:
        store.rollback()
        root = store.snapshot()
    assert root == SEED
    assert query("len(db['l'])", db=root) == 3
