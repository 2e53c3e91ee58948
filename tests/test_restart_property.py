"""Property tests: a stored tree survives restarts, and undo/redo walk its history exactly.

Hypothesis draws an initial tree, then steps that fit the tree as it is at that moment:
mutation units (set nested keys, append, extend, insert, pop, remove, del, sort, reverse,
clear, update, setdefault, popitem, `|=`, `+=`, `*=`, slice assignment and deletion with
steps), undo, redo, checkpoint and reopen. Each unit runs through `db.execute` on an embedded
database in a temporary directory and through plain `exec` on a CPython model of the tree.
After every step the stored tree must equal the model, type for type and in key order; a unit
that raises in CPython must raise the same type in pyzdb and change nothing; after every reopen
of the directory the tree must be exactly what it was before the close.

Every unit starts with `db['#'] += 1`, so each successful unit changes the tree and is exactly
one step of undo history, whatever its other statements do. Its other statements are drawn one
by one against the tree its earlier statements left, so each targets a container that exists.
Hypothesis does not reset pytest fixtures between examples, so each example makes its own
temporary directory.
"""

from __future__ import annotations

import ast
import copy
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from reference import assert_same, cpython_exec

import pyzdb

#: Root key of the unit counter; the key strategies below never produce it.
COUNTER = "#"

TEXT = st.text(alphabet="abxyé€ 0", max_size=4)

#: Dict keys without hash-equal twins (1 and True, 0 and 0.0 and -0.0 and False).
KEYS = st.one_of(
    TEXT,
    st.integers(-3, 12),
    st.none(),
    st.binary(max_size=2),
    st.tuples(st.integers(0, 3), TEXT),
)

#: Dict keys that may collide by hash and equality while differing in type.
HASH_EQUAL_KEYS = st.one_of(KEYS, st.sampled_from([True, False, 1.0, 0.0, -0.0, 1, 0]))

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.integers(),
    st.floats(allow_nan=False),
    TEXT,
    st.text(max_size=8),
    st.binary(max_size=6),
)

LEAVES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=4)

#: Example counts (40/30/20 below) are what fits the suite's 10 minutes: every reopen runs a full
#: collection over the whole test process's heap (`engine._recover` freezes the recovered tree),
#: which late in a full run costs ~0.3 s per reopen.
SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

STEP_KINDS = ["unit"] * 6 + ["undo"] * 2 + ["redo", "checkpoint", "reopen"]

SORT_ARGUMENTS = [
    "",
    "reverse=True",
    "key=str",
    "key=str, reverse=True",
    "key=lambda x: -len(str(x))",
]


def values(keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        LEAVES,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=12,
    )


def tree_copy(value: Any) -> Any:
    """A copy that shares no container, even where the original did (unlike `deepcopy`).

    The store is a tree: a container stored twice is two copies. The model follows that rule by
    being re-copied this way after each unit.
    """
    if isinstance(value, dict):
        return {key: tree_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [tree_copy(item) for item in value]
    return value


# -- the CPython reference ----------------------------------------------------------------------


def result_is_unambiguous(source: str) -> bool:
    """True when "the value of the last expression statement" can only mean one thing here."""
    body = ast.parse(source).body
    return isinstance(body[-1], ast.Expr) or not any(isinstance(s, ast.Expr) for s in body)


# -- drawing mutations that fit the current tree --------------------------------------------------


def containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    found = [(path, node)]
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, item in items:
        if isinstance(item, (dict, list)):
            found.extend(containers(item, path + (key,)))
    return found


def render(path: tuple[Any, ...]) -> str:
    return "db" + "".join(f"[{key!r}]" for key in path)


def bound(value: int | None) -> str:
    return "" if value is None else str(value)


class Unit:
    """The source of one mutation unit, with its values passed as parameters."""

    def __init__(self) -> None:
        self.lines = [f"db[{COUNTER!r}] += 1"]
        self.params: dict[str, Any] = {}

    def param(self, value: Any) -> str:
        name = f"v{len(self.params)}"
        self.params[name] = value
        return name

    @property
    def source(self) -> str:
        return "\n".join(self.lines) + "\n"


def draw_list_op(
    data: st.DataObject, unit: Unit, target: str, items: list[Any], vals: st.SearchStrategy[Any]
) -> str:
    n = len(items)
    index = st.integers(-n - 2, n + 2)
    start_stop = st.none() | index
    kind = data.draw(
        st.sampled_from(
            [
                "append",
                "extend",
                "insert",
                "pop",
                "remove",
                "sort",
                "reverse",
                "clear",
                "setitem",
                "delitem",
                "setslice",
                "delslice",
                "iadd",
                "imul",
                "item_iadd",
                "alias_iadd",
            ]
        ),
        label="list op",
    )
    event(f"list op: {kind}")
    if kind == "append":
        return f"{target}.append({unit.param(data.draw(vals))})"
    if kind == "extend":
        return f"{target}.extend({unit.param(data.draw(st.lists(vals, max_size=3)))})"
    if kind == "insert":
        return f"{target}.insert({data.draw(index)}, {unit.param(data.draw(vals))})"
    if kind == "pop":
        at = data.draw(st.none() | index)
        return f"{target}.pop({bound(at)})"
    if kind == "remove":
        value = data.draw(st.sampled_from(items) | vals if items else vals)
        return f"{target}.remove({unit.param(copy.deepcopy(value))})"
    if kind == "sort":
        return f"{target}.sort({data.draw(st.sampled_from(SORT_ARGUMENTS))})"
    if kind in ("reverse", "clear"):
        return f"{target}.{kind}()"
    if kind == "setitem":
        return f"{target}[{data.draw(index)}] = {unit.param(data.draw(vals))}"
    if kind == "delitem":
        return f"del {target}[{data.draw(index)}]"
    if kind in ("setslice", "delslice"):
        start, stop = data.draw(start_stop), data.draw(start_stop)
        step = data.draw(st.sampled_from([None, 1, 2, 3, -1, -2]))
        where = f"{target}[{bound(start)}:{bound(stop)}:{bound(step)}]"
        if kind == "delslice":
            return f"del {where}"
        size = len(range(n)[slice(start, stop, step)])
        length = data.draw(st.sampled_from([size, size, data.draw(st.integers(0, 4))]))
        replacement = data.draw(st.lists(vals, min_size=length, max_size=length))
        return f"{where} = {unit.param(replacement)}"
    if kind == "iadd":
        return f"{target} += {unit.param(data.draw(st.lists(vals, max_size=3)))}"
    if kind == "alias_iadd":  # `+=` on a local name bound to the stored list
        return f"alias = {target}\nalias += {unit.param(data.draw(st.lists(vals, max_size=3)))}"
    if kind == "imul" and n <= 8 and not any(isinstance(i, (dict, list)) for i in items):
        # Only lists of immutable items: `[[1]] * 2` aliases in CPython, never in a tree.
        return f"{target} *= {data.draw(st.integers(0, 2))}"
    if kind == "item_iadd" and items:
        at = data.draw(st.integers(-n, n - 1))
        return f"{target}[{at}] += {unit.param(data.draw(like(items[at], vals)))}"
    return f"{target}.append({unit.param(data.draw(vals))})"


def like(value: Any, vals: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value `+=` accepts with `value`, sometimes any value (then a TypeError)."""
    fitting: dict[type, st.SearchStrategy[Any]] = {
        int: st.integers(-10, 10),
        float: st.floats(-10, 10),
        str: TEXT,
        bytes: st.binary(max_size=3),
        list: st.lists(vals, max_size=2),
        tuple: st.lists(SCALARS, max_size=2).map(tuple),
    }
    strategy = fitting.get(type(value))
    return vals if strategy is None else st.one_of(strategy, strategy, vals)


def draw_dict_op(
    data: st.DataObject,
    unit: Unit,
    target: str,
    mapping: dict[Any, Any],
    keys: st.SearchStrategy[Any],
    vals: st.SearchStrategy[Any],
) -> str:
    is_root = target == "db"
    existing = [key for key in mapping if key != COUNTER] if is_root else list(mapping)
    key = data.draw(st.sampled_from(existing) | keys if existing else keys, label="key")
    kinds = [
        "set",
        "set",
        "del",
        "update",
        "setdefault",
        "pop",
        "pop_default",
        "ior",
        "alias_ior",
        "item_iadd",
        "popitem",
        "clear",
    ]
    if is_root:  # keep the counter: no clear, no popitem that could reach the first key
        kinds = kinds[:-2] + (["popitem"] if len(mapping) > 1 else [])
    kind = data.draw(st.sampled_from(kinds), label="dict op")
    event(f"dict op: {kind}" + (" (root)" if is_root else ""))
    mapping_param = st.dictionaries(keys, vals, max_size=3)
    if kind == "set":
        return f"{target}[{key!r}] = {unit.param(data.draw(vals))}"
    if kind == "del":
        return f"del {target}[{key!r}]"
    if kind == "update":
        return f"{target}.update({unit.param(data.draw(mapping_param))})"
    if kind == "setdefault":
        return f"{target}.setdefault({key!r}, {unit.param(data.draw(vals))})"
    if kind == "pop":
        return f"{target}.pop({key!r})"
    if kind == "pop_default":
        return f"{target}.pop({key!r}, None)"
    if kind == "ior":
        return f"{target} |= {unit.param(data.draw(mapping_param))}"
    if kind == "alias_ior":  # `|=` on a local name bound to the stored dict
        return f"alias = {target}\nalias |= {unit.param(data.draw(mapping_param))}"
    if kind == "item_iadd":
        current = mapping.get(key)
        return f"{target}[{key!r}] += {unit.param(data.draw(like(current, vals)))}"
    return f"{target}.{kind}()"


# -- one database and its CPython model ---------------------------------------------------------


class Session:
    """An embedded database in `directory`, its CPython model and the model's undo history."""

    def __init__(self, directory: Path, keys: st.SearchStrategy[Any]) -> None:
        self.directory = directory
        self.keys = keys
        self.values = values(keys)
        self.db = pyzdb.open(directory)
        self.model: dict[Any, Any] = {}
        self.undo_stack: list[dict[Any, Any]] = []
        self.redo_stack: list[dict[Any, Any]] = []

    def check(self, what: str) -> None:
        assert_same(self.db.get(), self.model, what)

    def load(self, tree: dict[Any, Any]) -> None:
        tree = {COUNTER: 0, **tree}
        note(f"initial tree: {tree!r}")
        self.db.execute("for k in tree:\n    db[k] = tree[k]\n", tree=tree)
        self.model = tree_copy(tree)
        self.check("tree after loading")

    def unit(self, data: st.DataObject) -> bool:
        """Draw and run one unit; True when it committed (it raised in neither).

        Statements are drawn one at a time against the CPython tree as the unit's earlier
        statements left it, and run there as they are drawn; the first one that raises ends
        the unit. pyzdb then runs the whole unit as one request.
        """
        unit = Unit()
        trial = tree_copy(self.model)
        names: dict[str, Any] = {"db": trial}
        reference: Exception | None = None
        expected = self.run_reference(unit.lines[0], unit, names)
        statements = data.draw(st.integers(1, 3), label="statements")
        for number in range(statements + 1):
            if number < statements:
                path, node = data.draw(st.sampled_from(containers(trial)), label="target")
                if isinstance(node, dict):
                    line = draw_dict_op(data, unit, render(path), node, self.keys, self.values)
                else:
                    line = draw_list_op(data, unit, render(path), node, self.values)
            elif data.draw(st.integers(0, 4), label="copy a subtree") == 0:
                line = self.copy_statement(data, trial)
            else:
                break
            unit.lines.append(line)
            try:
                expected = self.run_reference(line, unit, names)
            except Exception as error:
                reference = error
                break
        source = unit.source
        note(f"execute:\n{source}with {unit.params!r}")
        if reference is not None:  # the same unit must fail in pyzdb and change nothing
            try:
                self.db.execute(source, **unit.params)
            except Exception as raised:
                assert type(raised) is type(reference), (raised, reference)
            else:
                raise AssertionError(f"pyzdb did not raise {reference!r}")
            event(f"unit failed: {type(reference).__name__}")
            self.check("tree after a failed unit")
            return False
        event("unit committed")
        got = self.db.execute(source, **unit.params)
        if result_is_unambiguous(source):
            assert_same(got, expected, "returned value")
        self.undo_stack.append(self.model)
        self.redo_stack.clear()
        self.model = tree_copy(trial)
        self.check("tree after the unit")
        return True

    @staticmethod
    def run_reference(line: str, unit: Unit, names: dict[str, Any]) -> Any:
        """Run one statement of `unit` in CPython, with copies of the values it names."""
        for name, value in unit.params.items():
            if name not in names:
                names[name] = copy.deepcopy(value)
        return cpython_exec(line, names)

    def copy_statement(self, data: st.DataObject, tree: dict[Any, Any]) -> str:
        """Store a container of `tree` somewhere else in it: pyzdb stores a copy.

        It is always a unit's last statement: CPython makes an alias, which `tree_copy` then
        turns into the copy pyzdb made, before anything could tell the two apart.
        """
        found = containers(tree)
        source = data.draw(
            st.sampled_from([path for path, _ in found if path] or [None]), label="copied subtree"
        )
        if source is None:
            return "pass"
        places = [(path, node) for path, node in found if path[: len(source)] != source]
        path, node = data.draw(st.sampled_from(places), label="copy target")
        if isinstance(node, dict):
            key = data.draw(self.keys, label="copy key")
            if path == () and key == COUNTER:
                return "pass"
            return f"{render(path)}[{key!r}] = {render(source)}"
        return f"{render(path)}.append({render(source)})"

    def undo(self) -> None:
        if self.undo_stack:
            note("undo")
            assert self.db.undo() is True
            self.redo_stack.append(self.model)
            self.model = self.undo_stack.pop()
            self.check("tree after undo")

    def redo(self) -> None:
        if self.redo_stack:
            note("redo")
            assert self.db.redo() is True
            self.undo_stack.append(self.model)
            self.model = self.redo_stack.pop()
            self.check("tree after redo")

    def checkpoint(self) -> None:
        note("checkpoint")
        self.db.checkpoint()
        self.check("tree after checkpoint")

    def reopen(self) -> None:
        """Close and reopen the directory; undo history after a restart is not modelled."""
        note("reopen")
        before = self.db.get()
        self.db.close()
        self.db = pyzdb.open(self.directory)
        assert_same(self.db.get(), before, "tree after reopen")
        self.check("tree after reopen")
        self.undo_stack.clear()
        self.redo_stack.clear()

    def steps(self, data: st.DataObject, count: int) -> None:
        for _ in range(count):
            kind = data.draw(st.sampled_from(STEP_KINDS), label="step")
            if kind == "unit":
                self.unit(data)
            else:
                getattr(self, kind)()


@contextmanager
def session(keys: st.SearchStrategy[Any] = KEYS) -> Iterator[Session]:
    with tempfile.TemporaryDirectory(prefix="pyzdb-property-") as tmp:
        opened = Session(Path(tmp) / "data", keys)
        try:
            yield opened
        finally:
            opened.db.close()


def initial_tree(keys: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[Any, Any]]:
    return st.dictionaries(keys, values(keys), max_size=5)


# -- the properties -------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=40)
@given(data=st.data())
def test_reopen_gives_the_same_tree(data):
    with session() as s:
        s.load(data.draw(initial_tree(KEYS), label="initial tree"))
        s.steps(data, data.draw(st.integers(1, 12), label="steps before the restart"))
        s.reopen()
        s.checkpoint()
        s.steps(data, data.draw(st.integers(1, 8), label="steps after the checkpoint"))
        s.reopen()


@settings(SETTINGS, max_examples=30)
@given(data=st.data())
def test_undo_all_then_redo_all(data):
    with session() as s:
        s.load(data.draw(initial_tree(KEYS), label="initial tree"))
        states = [s.model]
        for _ in range(data.draw(st.integers(1, 10), label="units")):
            if s.unit(data):
                states.append(s.model)
        for state in reversed(states[:-1]):
            assert s.db.undo() is True
            assert_same(s.db.get(), state, "tree while undoing")
        assert_same(s.db.get(), states[0], "tree after undoing every unit")
        for state in states[1:]:
            assert s.db.redo() is True
            assert_same(s.db.get(), state, "tree while redoing")
        assert s.db.redo() is False
        assert_same(s.db.get(), states[-1], "tree after redoing every unit")
        s.model = states[-1]
        s.reopen()


@settings(SETTINGS, max_examples=20)
@given(data=st.data())
def test_hash_equal_keys_survive_undo_and_restart(data):
    """Keys such as 1 and True are one dict key; its type must still be what was stored."""
    with session(HASH_EQUAL_KEYS) as s:
        s.load(data.draw(initial_tree(HASH_EQUAL_KEYS), label="initial tree"))
        s.steps(data, data.draw(st.integers(1, 12), label="steps"))
        s.checkpoint()
        s.steps(data, data.draw(st.integers(0, 4), label="steps after the checkpoint"))
        s.reopen()
