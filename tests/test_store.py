"""The store: every mutator against plain Python, undo/redo, replay, savepoints, read-only.

Each mutator is checked three ways: the tree equals what plain Python does to a plain copy; undo
gives back the exact tree before (values, types, key order, object identities) and redo the tree
after; and the effects, replayed with `apply` on a fresh store, rebuild the same tree. Property
tests do the same for random sequences of mutations over several units.
"""

from __future__ import annotations

import copy
import gc
import marshal
import operator
import types
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyzdb
from pyzdb.errors import SecurityError
from pyzdb.plain import freeze, to_plain
from pyzdb.storage import adopt, primitives
from pyzdb.storage.store import Store
from pyzdb.storage.tracked import TrackedDict, TrackedList
from pyzdb.values import thaw_file


def typed(value: Any) -> Any:
    """A comparable picture of `value` that keeps exact types and dict key order."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if type(value) is tuple:
        return ("tuple", [typed(v) for v in value])
    return (type(value).__name__, repr(value))


def containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], int]]:
    """(path, id) of every container in the tree, to check that undo restores identities."""
    out = [(path, id(value))]
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, (dict, list)):
            out.extend(containers(item, path + (key,)))
    return out


INITIAL: dict[Any, Any] = {
    "l": [0, 1, 2, 3, 4, 5, 6, 7],
    "n": [[1], {"a": 1}, [2, [3]], {"b": {"c": 2}}, [4]],
    "d": {"x": 1, "y": [1, 2], "z": {"w": 3}, 1: "int", (1, "t"): "tuple", None: b"none"},
    "b": {True: "bool", 2.0: "float", 0: "zero", (1, 2.0): "tuple"},
    "big": {f"k{i}": i for i in range(100)},
    "e": {},
    "el": [],
    "t": (1, (2.5, "x")),
}


def run_three_ways(op: Any, initial: dict[Any, Any] = INITIAL) -> list[tuple[Any, ...]]:
    """Run `op(root)` on the store and on a plain copy; check result, undo, redo and replay."""
    plain = copy.deepcopy(initial)
    try:
        expected, expected_error = op(plain), None
    except Exception as exc:  # the store must fail the same way
        expected, expected_error = None, exc

    store = Store(copy.deepcopy(initial))
    root = store.root
    before, before_ids = typed(root), containers(root)
    store.begin()
    if expected_error is not None:
        with pytest.raises(type(expected_error)) as info:
            op(root)
        if not str(info.value).startswith(("cannot store", "cannot use")):  # pyzdb's refusals
            assert str(info.value) == str(expected_error)
        store.rollback()
        assert typed(root) == before and containers(root) == before_ids
        store._check()
        return []
    result = op(root)
    store._check()
    effects = store.commit("op")
    assert typed(root) == typed(plain)
    assert typed(to_plain(result)) == typed(expected)
    after, after_ids = typed(root), containers(root)
    marshal.dumps(effects)  # effects must be journal-able as they are

    replica = Store(copy.deepcopy(initial))
    for effect in effects:
        replica.apply(effect)
    replica._check()
    assert typed(replica.root) == after

    undo_effects = store.undo()
    store._check()
    assert typed(root) == before and containers(root) == before_ids
    for effect in undo_effects or []:
        replica.apply(effect)
    assert typed(replica.root) == before

    redo_effects = store.redo()
    store._check()
    assert typed(root) == after and containers(root) == after_ids
    for effect in redo_effects or []:
        replica.apply(effect)
    assert typed(replica.root) == after
    assert typed(Store(store.snapshot()).root) == after
    return effects


def _sort(lst: list[Any], **kw: Any) -> None:
    lst.sort(**kw)


MUTATIONS: dict[str, Any] = {
    # list item and slice assignment
    "l[i]=": lambda r: r["l"].__setitem__(2, "x"),
    "l[-1]=container": lambda r: r["l"].__setitem__(-1, [9, {"k": 1}]),
    "l[True]=": lambda r: r["l"].__setitem__(True, "one"),
    "l[a:b]=longer": lambda r: r["l"].__setitem__(slice(1, 3), [7, 8, 9]),
    "l[a:b]=[]": lambda r: r["l"].__setitem__(slice(1, 3), []),
    "l[b:a]=insert": lambda r: r["l"].__setitem__(slice(5, 2), ["i"]),
    "l[:]=self": lambda r: r["l"].__setitem__(slice(None), r["l"]),
    "l[::2]=": lambda r: r["l"].__setitem__(slice(None, None, 2), "abcd"),
    "l[::-3]=": lambda r: r["l"].__setitem__(slice(None, None, -3), [1, 2, 3]),
    "l[1:7:1]=": lambda r: r["l"].__setitem__(slice(1, 7, 1), [0]),
    "l[::2]=wrong size": lambda r: r["l"].__setitem__(slice(None, None, 2), [1]),
    "l[99]=": lambda r: r["l"].__setitem__(99, 1),
    "l[-99]=": lambda r: r["l"].__setitem__(-99, 1),
    "l['a']=": lambda r: r["l"].__setitem__("a", 1),
    "l[1:2]=5": lambda r: r["l"].__setitem__(slice(1, 2), 5),
    "l[::2]=5": lambda r: r["l"].__setitem__(slice(None, None, 2), 5),
    # list deletion
    "del l[i]": lambda r: r["l"].__delitem__(3),
    "del l[-2]": lambda r: r["l"].__delitem__(-2),
    "del l[a:b]": lambda r: r["l"].__delitem__(slice(2, 5)),
    "del l[b:a]": lambda r: r["l"].__delitem__(slice(5, 2)),
    "del l[:]": lambda r: r["l"].__delitem__(slice(None)),
    "del l[::2]": lambda r: r["l"].__delitem__(slice(None, None, 2)),
    "del l[::-3]": lambda r: r["l"].__delitem__(slice(None, None, -3)),
    "del l[1::3]": lambda r: r["l"].__delitem__(slice(1, None, 3)),
    "del l[6:1:-4]": lambda r: r["l"].__delitem__(slice(6, 1, -4)),
    "del l[99]": lambda r: r["l"].__delitem__(99),
    "del n[::2] containers": lambda r: r["n"].__delitem__(slice(None, None, 2)),
    # list methods
    "append": lambda r: r["l"].append(8),
    "append container": lambda r: r["l"].append({"new": [1, (2, 3)]}),
    "extend": lambda r: r["l"].extend([8, [9]]),
    "extend generator": lambda r: r["l"].extend(i * i for i in range(3)),
    "extend self": lambda r: r["n"].extend(r["n"]),
    "extend empty": lambda r: r["l"].extend([]),
    "extend 5": lambda r: r["l"].extend(5),
    "insert 0": lambda r: r["l"].insert(0, "first"),
    "insert 3": lambda r: r["n"].insert(3, {"ins": 1}),
    "insert past end": lambda r: r["l"].insert(100, "last"),
    "insert -1": lambda r: r["l"].insert(-1, "x"),
    "insert -100": lambda r: r["l"].insert(-100, "x"),
    "insert into empty": lambda r: r["el"].insert(5, [1]),
    "pop": lambda r: r["l"].pop(),
    "pop(0)": lambda r: r["l"].pop(0),
    "pop(-2)": lambda r: r["l"].pop(-2),
    "pop container": lambda r: r["n"].pop(1),
    "pop(99)": lambda r: r["l"].pop(99),
    "pop empty": lambda r: r["el"].pop(),
    "pop('x')": lambda r: r["l"].pop("x"),
    "remove": lambda r: r["l"].remove(3),
    "remove container": lambda r: r["n"].remove({"a": 1}),
    "remove missing": lambda r: r["l"].remove(99),
    "clear list": lambda r: r["n"].clear(),
    "clear empty list": lambda r: r["el"].clear(),
    "sort": lambda r: r["n"][2].__setitem__(0, 9) or _sort(r["l"]),
    "sort reverse": lambda r: _sort(r["l"], reverse=True),
    "sort key": lambda r: _sort(r["l"], key=lambda v: -v),
    "sort key stable": lambda r: _sort(r["l"], key=lambda v: v % 3),
    "sort key reverse stable": lambda r: _sort(r["l"], key=lambda v: v % 3, reverse=True),
    "sort containers": lambda r: _sort(r["n"], key=lambda v: -len(v)),
    "sort sorted": lambda r: _sort(r["l"]),
    "sort mixed": lambda r: r["n"].sort(),
    "reverse": lambda r: r["l"].reverse(),
    "reverse containers": lambda r: r["n"].reverse(),
    "+=": lambda r: operator.iadd(r["l"], [8, 9]),
    "+= str": lambda r: operator.iadd(r["l"], "ab"),
    "+= 5": lambda r: operator.iadd(r["l"], 5),
    "*= 3": lambda r: operator.imul(r["l"], 3),
    "*= 1": lambda r: operator.imul(r["l"], 1),
    "*= 0": lambda r: operator.imul(r["l"], 0),
    "*= -1": lambda r: operator.imul(r["l"], -1),
    "*= 'x'": lambda r: operator.imul(r["l"], "x"),
    # dict
    "d[new]=": lambda r: r["d"].__setitem__("new", 1),
    "d[old]=": lambda r: r["d"].__setitem__("x", 2),
    "d[old]=container": lambda r: r["d"].__setitem__("y", {"c": [1]}),
    "d[tuple]=": lambda r: r["d"].__setitem__((2, ("n", None)), 1),
    "d[1.0]= keeps int key": lambda r: r["d"].__setitem__(1.0, "float"),
    "d[list]=": lambda r: r["d"].__setitem__([1], 1),
    "del d[k]": lambda r: r["d"].__delitem__("y"),
    "del d[last]": lambda r: r["d"].__delitem__(None),
    "del d[first]": lambda r: r["d"].__delitem__("x"),
    "del d[missing]": lambda r: r["d"].__delitem__("nope"),
    "del d[list]": lambda r: r["d"].__delitem__([1]),
    "del b[1] keeps True": lambda r: r["b"].__delitem__(1),
    "del b[2] keeps 2.0": lambda r: r["b"].__delitem__(2),
    "del b[(1.0, 2)]": lambda r: r["b"].__delitem__((1.0, 2)),
    "pop(k)": lambda r: r["d"].pop("z"),
    "pop(k, default)": lambda r: r["d"].pop("nope", "dflt"),
    "pop(missing)": lambda r: r["d"].pop("nope"),
    "pop(False) keeps 0": lambda r: r["b"].pop(False),
    "popitem": lambda r: r["d"].popitem(),
    "popitem empty": lambda r: r["e"].popitem(),
    "clear dict": lambda r: r["d"].clear(),
    "clear big": lambda r: r["big"].clear(),
    "update dict": lambda r: r["d"].update({"x": 5, "q": [1]}),
    "update pairs": lambda r: r["d"].update([("q", 1), ("x", 2), ("q", 3)]),
    "update kwargs": lambda r: r["d"].update(x=9, new={"k": 1}),
    "update dict+kwargs": lambda r: r["d"].update({"a": 1}, b=2),
    "update mapping": lambda r: r["d"].update(types.MappingProxyType({"m": 1, "x": [2]})),
    "update tracked": lambda r: r["e"].update(r["d"]),
    "update self": lambda r: r["d"].update(r["d"]),
    "update bad pair": lambda r: r["d"].update([("a", 1, 2)]),
    "update not pairs": lambda r: r["d"].update([1]),
    "update two args": lambda r: r["d"].update({}, {}),
    "setdefault new": lambda r: r["d"].setdefault("s", [1, 2]),
    "setdefault new None": lambda r: r["d"].setdefault("s"),
    "setdefault old": lambda r: r["d"].setdefault("x", 99),
    "|= dict": lambda r: operator.ior(r["d"], {"x": 0, "o": 1}),
    "|= pairs": lambda r: operator.ior(r["d"], [("o", 1)]),
    "|= 5": lambda r: operator.ior(r["d"], 5),
    "del big middle": lambda r: r["big"].__delitem__("k50"),
    "del big many": lambda r: [r["big"].pop(f"k{i}") for i in range(0, 100, 7)],
    # nested paths, lazily renumbered list children, several mutations in one unit
    "insert then mutate shifted": lambda r: (
        r["n"].insert(0, [0]),
        r["n"][4]["b"].__setitem__("c", 5),
    ),
    "pop(0) then mutate": lambda r: (r["n"].pop(0), r["n"][2]["b"].__setitem__("c", 5)),
    "sort then mutate": lambda r: (_sort(r["n"], key=len), r["n"][0].append("z")),
    "reverse then mutate": lambda r: (
        r["n"].reverse(),
        r["n"][0].append("z"),
        r["n"][1]["b"].pop("c"),
    ),
    "del slice then mutate": lambda r: (r["n"].__delitem__(slice(0, 2)), r["n"][0][1].append(4)),
    "mutate deep": lambda r: r["n"][2][1].extend([4, 5]),
    "detached mutation": lambda r: r["n"].pop(1).__setitem__("a", 99),
    "detached from dict": lambda r: r["d"].pop("z").__setitem__("w", 5),
    "replaced then mutated": lambda r: (r["d"]["z"], r["d"].__setitem__("z", 1))[0].clear(),
    "cleared then mutated": lambda r: (r["d"]["y"], r["d"].clear())[0].append(3),
    "detached then reinsert": lambda r: (r["n"].pop(3)["b"].__setitem__("c", 7), r["n"].append(1)),
    "delete and re-add key": lambda r: (r["d"].pop("x"), r["d"].__setitem__("x", 0)),
    "big dict churn": lambda r: (
        [r["big"].pop(f"k{i}") for i in range(10, 60, 3)],
        r["big"].__setitem__("k10", "back"),
        r["big"].pop("k99"),
        r["big"].popitem(),
    ),
    "clear then refill": lambda r: (r["d"].clear(), r["d"].update(a=1)),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_mutation_matches_python_and_undoes(name: str) -> None:
    run_three_ways(MUTATIONS[name])


@pytest.mark.parametrize("name", [n for n in MUTATIONS if n.startswith(("del big", "big"))])
def test_big_dict_deletes_with_exact_positions(name: str, monkeypatch: Any) -> None:
    # The other side of SMALL_DICT: positions found by search instead of order snapshots.
    monkeypatch.setattr(primitives, "SMALL_DICT", 1000)
    run_three_ways(MUTATIONS[name])


def test_small_dict_deletes_with_order_snapshots(monkeypatch: Any) -> None:
    monkeypatch.setattr(primitives, "SMALL_DICT", 0)
    for name in (
        "del d[k]",
        "del d[first]",
        "del b[1] keeps True",
        "pop(False) keeps 0",
        "delete and re-add key",
        "update self",
    ):
        run_three_ways(MUTATIONS[name])


def test_effects_have_normalised_paths_and_frozen_values() -> None:
    effects = run_three_ways(
        lambda r: (r["l"].__setitem__(-1, "z"), r["l"].insert(-100, 0), r["n"][-1].append([1]))
    )
    assert effects == [("set", ("l",), 7, "z"), ("ins", ("l",), 0, 0), ("ins", ("n", 4), 1, [1])]
    assert type(effects[2][3]) is list  # frozen: plain, not a TrackedList


def test_mutating_a_stored_value_later_does_not_change_its_effect() -> None:
    store = Store()
    store.begin()
    store.root["a"] = {"x": [1]}
    store.root["a"]["x"].append(2)
    effects = store.commit("u")
    assert effects[0] == ("set", (), "a", {"x": [1]})


def test_identity_is_restored_by_undo() -> None:
    store = Store(copy.deepcopy(INITIAL))
    root = store.root
    kept = root["n"][3]
    store.begin()
    del root["n"]
    root["n"] = [1]
    store.commit("replace n")
    assert root["n"] == [1]
    store.undo()
    assert root["n"][3] is kept
    store._check()


# -- copy semantics: the tree is a tree ----------------------------------------------------


def test_storing_a_stored_container_stores_a_copy() -> None:
    store = Store(copy.deepcopy(INITIAL))
    root = store.root
    store.begin()
    root["copy"] = root["n"]
    assert root["copy"] == root["n"] and root["copy"] is not root["n"]
    root["copy"][1]["a"] = 5
    assert root["n"][1]["a"] == 1
    root["l"].append(root["l"])
    assert root["l"][-1] == [0, 1, 2, 3, 4, 5, 6, 7]
    root["me"] = root
    assert root["me"]["l"] == root["l"] and root["me"] is not root
    root["two"] = [root["d"], root["d"]]
    assert root["two"][0] is not root["two"][1]
    root["n"] *= 2
    root["n"][0].append("only the first")
    assert root["n"][5] == [1]
    store._check()
    store.commit("copies")


def test_storing_a_user_value_copies_it() -> None:
    store = Store()
    store.begin()
    mine = {"a": [1]}
    store.root["m"] = mine
    mine["a"].append(2)
    assert store.root["m"] == {"a": [1]}
    store.commit("u")


def test_self_referencing_value_is_refused_cleanly() -> None:
    store = Store()
    store.begin()
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(Exception, match="deeper than 200"):
        store.root["loop"] = loop
    assert store.root == {} and store.commit("u") == []


# -- units, savepoints, undo/redo ----------------------------------------------------------


def test_no_unit_open_is_a_programming_error() -> None:
    store = Store({"a": [1]})
    with pytest.raises(RuntimeError):
        store.root["b"] = 1
    with pytest.raises(RuntimeError):
        store.root["a"].append(1)
    assert store.root == {"a": [1]}


def test_begin_twice_and_commit_without_unit_are_refused() -> None:
    store = Store()
    store.begin()
    with pytest.raises(RuntimeError):
        store.begin()
    store.commit("u")
    with pytest.raises(RuntimeError):
        store.commit("again")
    with pytest.raises(RuntimeError):
        store.rollback()


def test_rollback_restores_everything() -> None:
    store = Store(copy.deepcopy(INITIAL))
    before, ids = typed(store.root), containers(store.root)
    store.begin()
    for op in MUTATIONS.values():
        try:
            op(store.root)
        except Exception:
            pass
    store.rollback()
    assert typed(store.root) == before and containers(store.root) == ids
    assert store.undo() is None


def test_savepoints() -> None:
    store = Store({"l": [1]})
    root = store.root
    store.begin()
    root["a"] = 1
    first = store.savepoint()
    root["l"].append(2)
    second = store.savepoint()
    root["b"] = [3]
    store.rollback_to(second)
    assert root == {"l": [1, 2], "a": 1}
    root["c"] = 4
    store.rollback_to(first)
    assert root == {"l": [1], "a": 1}
    with pytest.raises(ValueError):
        store.rollback_to(second)  # later marks die with the rollback
    store.rollback_to(first)  # the mark itself stays valid
    root["d"] = 5
    effects = store.commit("sp")
    assert effects == [("set", (), "a", 1), ("set", (), "d", 5)]
    replica = Store({"l": [1]})
    for effect in effects:
        replica.apply(effect)
    assert typed(replica.root) == typed(root)
    store.undo()
    assert root == {"l": [1]}


def test_savepoint_segments_keep_big_dict_order(monkeypatch: Any) -> None:
    monkeypatch.setattr(primitives, "SMALL_DICT", 0)
    initial = {"d": {k: k for k in "abcdefgh"}}
    store = Store(copy.deepcopy(initial))
    d = store.root["d"]
    store.begin()
    del d["b"]
    mark = store.savepoint()
    del d["d"]
    del d["f"]
    store.rollback_to(mark)
    assert list(d) == list("acdefgh")
    del d["c"]
    store.commit("u")
    assert list(d) == list("adefgh")
    store.undo()
    assert list(d) == list("abcdefgh")


def test_undo_redo_sequence_and_history() -> None:
    store = Store()
    root = store.root
    for i in range(3):
        store.begin()
        root[f"k{i}"] = i
        store.commit(f"db['k{i}'] = {i}")
    store.begin()
    store.commit("a read: no undo unit")
    assert [h["label"] for h in store.history()] == ["db['k0'] = 0", "db['k1'] = 1", "db['k2'] = 2"]
    assert store.undo() == [("del", (), "k2")]
    assert store.undo() == [("del", (), "k1")]
    assert [h["undone"] for h in store.history()] == [False, True, True]
    assert store.history()[1]["label"] == "db['k1'] = 1"
    assert store.redo() == [("set", (), "k1", 1)]
    assert root == {"k0": 0, "k1": 1}
    store.begin()
    root["new"] = 1
    store.commit("new")
    assert store.redo() is None  # a new change drops the redo stack
    assert [h["undone"] for h in store.history()] == [False] * 3


def test_undo_depth_is_bounded() -> None:
    store = Store(undo_depth=3)
    for i in range(5):
        store.begin()
        store.root[i] = i
        store.commit(str(i))
    assert len(store.history()) == 3
    for _ in range(3):
        assert store.undo() is not None
    assert store.undo() is None
    assert store.root == {0: 0, 1: 1}


def test_undo_refused_inside_a_unit() -> None:
    store = Store()
    store.begin()
    with pytest.raises(RuntimeError):
        store.undo()
    with pytest.raises(RuntimeError):
        store.apply(("set", (), "a", 1))


def test_apply_refuses_malformed_effects() -> None:
    store = Store({"l": [1], "d": {}})
    with pytest.raises(ValueError):
        store.apply(("perm", ("d",), [0]))
    with pytest.raises(ValueError):
        store.apply(("frobnicate", (), 1))
    with pytest.raises(TypeError):
        store.apply(("set", (), "s", {1, 2}))
    assert store.root == {"l": [1], "d": {}}


# -- read-only stores ----------------------------------------------------------------------

READ_ONLY_ATTEMPTS = {
    "set": lambda r: r.__setitem__("x", 1),
    "del": lambda r: r.__delitem__("d"),
    "pop": lambda r: r["d"].pop("x"),
    "pop missing": lambda r: r["d"].pop("missing", None),
    "popitem": lambda r: r["d"].popitem(),
    "clear": lambda r: r["d"].clear(),
    "update": lambda r: r["d"].update(a=1),
    "setdefault": lambda r: r["d"].setdefault("x", 1),
    "|=": lambda r: r["d"].__ior__({"a": 1}),
    "l[0]=": lambda r: r["l"].__setitem__(0, 1),
    "l[:]=": lambda r: r["l"].__setitem__(slice(None), []),
    "del l[0]": lambda r: r["l"].__delitem__(0),
    "append": lambda r: r["l"].append(1),
    "extend": lambda r: r["l"].extend([1]),
    "insert": lambda r: r["l"].insert(0, 1),
    "l.pop": lambda r: r["l"].pop(),
    "remove": lambda r: r["l"].remove(1),
    "l.clear": lambda r: r["l"].clear(),
    "sort": lambda r: r["l"].sort(reverse=True),
    "reverse": lambda r: r["l"].reverse(),
    "+=": lambda r: r["l"].__iadd__([1]),
    "*=": lambda r: r["l"].__imul__(2),
    "nested": lambda r: r["n"][3]["b"].__setitem__("c", 0),
}


@pytest.mark.parametrize("name", list(READ_ONLY_ATTEMPTS))
@pytest.mark.parametrize("unit_open", [False, True])
def test_read_only_store_refuses_every_mutator(name: str, unit_open: bool) -> None:
    store = Store(copy.deepcopy(INITIAL))
    store.writable = False
    before = typed(store.root)
    if unit_open:
        store.begin()
    with pytest.raises(SecurityError, match="query is read-only"):
        READ_ONLY_ATTEMPTS[name](store.root)
    assert typed(store.root) == before
    if unit_open:
        assert store.commit("q") == [] and store.history() == []


# -- the containers themselves -------------------------------------------------------------


def test_tracked_containers_cannot_be_made_directly_and_pickle_as_plain() -> None:
    with pytest.raises(TypeError):
        TrackedDict({"a": 1})
    with pytest.raises(TypeError):
        TrackedList([1])
    store = Store(copy.deepcopy(INITIAL))
    clone = copy.deepcopy(store.root)
    assert type(clone) is dict and type(clone["n"]) is list and type(clone["n"][1]) is dict
    assert typed(clone) == typed(store.root)


def test_reads_are_inherited_from_dict_and_list() -> None:
    for cls, names in (
        (
            TrackedDict,
            (
                "__getitem__",
                "__iter__",
                "__len__",
                "__contains__",
                "get",
                "keys",
                "items",
                "values",
            ),
        ),
        (TrackedList, ("__getitem__", "__iter__", "__len__", "__contains__", "index", "count")),
    ):
        for name in names:
            assert name not in cls.__dict__, f"{cls.__name__}.{name} must stay C-level"


def test_no_instance_dict() -> None:
    store = Store({"d": {}, "l": []})
    assert not hasattr(store.root["d"], "__dict__")
    assert not hasattr(store.root["l"], "__dict__")


def test_lazy_renumbering_is_correct_after_many_shifts() -> None:
    store = Store({"l": [{"i": i} for i in range(20)]})
    lst = store.root["l"]
    store.begin()
    lst.pop(0)
    lst.insert(3, {"i": "new"})
    del lst[5:8]
    effects_before = len(store._rec.log)
    lst[10]["touched"] = True
    assert store._rec.effects[-1][1] == ("l", 10)
    assert len(store._rec.log) == effects_before + 1
    store._check()
    store.commit("u")


# -- property tests --------------------------------------------------------------------------

KEYS = st.sampled_from(
    [0, 1, True, False, 1.0, 2, -1, "a", "b", "", b"a", None, (1, "a"), (True,), (1.0, (2,))]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=3)
    | st.binary(max_size=3)
)
TUPLES = st.recursive(SCALARS, lambda inner: st.tuples(inner, inner), max_leaves=4)
VALUES = st.recursive(
    SCALARS | TUPLES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=8,
)


def container_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, (dict, list)):
            out.extend(container_paths(item, path + (key,)))
    return out


def at(root: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        root = root[key]
    return root


def draw_op(data: Any, node: Any) -> Any:
    """A random mutation of `node`, as a function applicable to the model and to the tree.

    Stored values are copied in the model (``deepcopy``), since the tree never aliases.
    """
    draw = data.draw
    if isinstance(node, dict):
        kind = draw(
            st.sampled_from(
                ["set", "del", "pop", "popitem", "clear", "update", "setdefault", "ior", "detach"]
            )
        )
        key, value = draw(KEYS), draw(VALUES)
        present = [k for k in node] or [key]
        old = draw(st.sampled_from(present))
        pairs = draw(st.lists(st.tuples(KEYS, VALUES), max_size=3))

        def detach_value(d: dict[Any, Any]) -> None:
            gone = d.get(old)
            if isinstance(gone, (list, dict)):
                d[old] = None
                gone.clear()

        return {
            "set": lambda d: d.__setitem__(key, copy.deepcopy(value)),
            "del": lambda d: d.__delitem__(old) if old in d else None,
            "pop": lambda d: d.pop(old, None),
            "popitem": lambda d: d.popitem() if d else None,
            "clear": lambda d: d.clear(),
            "update": lambda d: d.update(copy.deepcopy(pairs)),
            "setdefault": lambda d: d.setdefault(key, copy.deepcopy(value)),
            "ior": lambda d: d.__ior__(copy.deepcopy(dict(pairs))),
            "detach": detach_value,
        }[kind]
    n = len(node)
    kind = draw(
        st.sampled_from(
            [
                "append",
                "extend",
                "insert",
                "pop",
                "del",
                "delslice",
                "setslice",
                "setitem",
                "sort",
                "reverse",
                "clear",
                "imul",
                "iadd",
                "remove",
                "detach",
            ]
        )
    )
    value = draw(VALUES)
    values = draw(st.lists(VALUES, max_size=3))
    i = draw(st.integers(-n - 2, n + 2))
    s = slice(
        draw(st.none() | st.integers(-n - 1, n + 1)),
        draw(st.none() | st.integers(-n - 1, n + 1)),
        draw(st.none() | st.sampled_from([1, 2, 3, -1, -2])),
    )
    reverse = draw(st.booleans())
    times = draw(st.integers(-1, 2))

    def setslice(lst: list[Any]) -> None:
        if s.step not in (None, 1):
            size = len(range(*s.indices(len(lst))))
            lst[s] = [copy.deepcopy(v) for v in (values * (size + 1))[:size]]
        else:
            lst[s] = copy.deepcopy(values)

    def imul(lst: list[Any]) -> None:
        if len(lst) < 6:
            if isinstance(lst, TrackedList):
                lst *= times
            else:
                lst[:] = [copy.deepcopy(v) for v in lst * max(times, 0)]

    def detach(lst: list[Any]) -> None:
        if lst and isinstance(lst[i % len(lst)], (list, dict)):
            gone = lst.pop(i % len(lst))
            if isinstance(gone, list):
                gone.append(1)
            else:
                gone["detached"] = 1

    return {
        "append": lambda lst: lst.append(copy.deepcopy(value)),
        "extend": lambda lst: lst.extend(copy.deepcopy(values)),
        "insert": lambda lst: lst.insert(i, copy.deepcopy(value)),
        "pop": lambda lst: lst.pop(i) if -len(lst) <= i < len(lst) else None,
        "del": lambda lst: lst.__delitem__(i) if -len(lst) <= i < len(lst) else None,
        "delslice": lambda lst: lst.__delitem__(s),
        "setslice": setslice,
        "setitem": lambda lst: (
            lst.__setitem__(i, copy.deepcopy(value)) if -len(lst) <= i < len(lst) else None
        ),
        "sort": lambda lst: lst.sort(key=repr, reverse=reverse),
        "reverse": lambda lst: lst.reverse(),
        "clear": lambda lst: lst.clear(),
        "imul": imul,
        "iadd": lambda lst: lst.__iadd__(copy.deepcopy(values)),
        "remove": lambda lst: lst.remove(lst[i % len(lst)]) if lst else None,
        "detach": detach,
    }[kind]


START = {"d": {"a": [1, {"b": 2}], 1: {}}, "l": [[], {"x": [0]}, 3]}


def random_session(data: Any) -> None:
    store = Store(copy.deepcopy(START))
    root = store.root
    model = copy.deepcopy(START)
    history = [typed(model)]
    journal: list[tuple[Any, ...]] = []
    for _ in range(data.draw(st.integers(1, 4))):
        unit_start = copy.deepcopy(model)
        store.begin()
        for _ in range(data.draw(st.integers(1, 6))):
            path = data.draw(st.sampled_from(container_paths(model)))
            op = draw_op(data, at(model, path))
            try:
                op(at(model, path))
            except Exception as exc:  # the tree must refuse alike, and change nothing
                with pytest.raises(type(exc)):
                    op(at(root, path))
            else:
                op(at(root, path))
            store._check()
            assert typed(root) == typed(model)
        if data.draw(st.integers(0, 4)) == 0:
            store.rollback()
            model = unit_start
            assert typed(root) == typed(model)
            continue
        undoable = len(store.history())
        journal.extend(store.commit("unit"))
        if len(store.history()) > undoable:  # a unit that changed nothing leaves no undo unit
            history.append(typed(model))
    replica = Store(copy.deepcopy(START))
    for effect in journal:
        replica.apply(effect)
    assert typed(replica.root) == history[-1]
    for state in reversed(history[:-1]):
        for effect in store.undo() or []:
            replica.apply(effect)
        store._check()
        assert typed(root) == state == typed(replica.root)
    assert store.undo() is None
    for state in history[1:]:
        for effect in store.redo() or []:
            replica.apply(effect)
        store._check()
        assert typed(root) == state == typed(replica.root)
    assert typed(Store(store.snapshot()).root) == history[-1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_sessions(data: Any) -> None:
    random_session(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_sessions_with_order_snapshots(data: Any) -> None:
    original = primitives.SMALL_DICT
    primitives.SMALL_DICT = 0  # every non-last delete takes the big-dict path
    try:
        random_session(data)
    finally:
        primitives.SMALL_DICT = original


def test_freeze_of_tree_is_plain() -> None:
    store = Store(copy.deepcopy(INITIAL))
    frozen = freeze(store.root)
    assert typed(frozen) == typed(INITIAL)
    stack = [frozen]
    while stack:
        node = stack.pop()
        assert type(node) in (dict, list)
        stack.extend(
            v
            for v in (node.values() if isinstance(node, dict) else node)
            if isinstance(v, (dict, list))
        )
    assert marshal.loads(marshal.dumps(frozen)) == frozen


def test_augmented_assignment_does_not_copy_the_target() -> None:
    store = Store({"l": [[1]], "d": {"x": [1]}})
    root = store.root
    inner, first = root["l"], root["l"][0]
    store.begin()
    root["l"] += [2]  # __iadd__, then root['l'] = <the same list>
    root["l"][0] += [3]
    root["d"]["x"] *= 2
    effects = store.commit("aug")
    assert root["l"] is inner and root["l"][0] is first
    assert effects == [("ins", ("l",), 1, 2), ("ins", ("l", 0), 1, 3), ("ins", ("d", "x"), 1, 1)]
    assert typed(root) == typed({"l": [[1, 3], 2], "d": {"x": [1, 1]}})


# -- loading a frozen root: the store consumes it --------------------------------------------

FROZEN_FILE = frozenset({("pyzdb.File", "ab" * 16, "notes.txt", 3)})


def frozen_sample() -> dict[Any, Any]:
    return {
        "users": [{"id": i, "name": f"u{i}", "age": i % 90} for i in range(10)],
        "nested": {"a": [1, [2, {"b": (3, (4.5, "x"))}]], "e": {}, "el": [], 2: None},
        "mixed": [[1, 2], {"k": FROZEN_FILE}, (1, 2), "s", [{"x": 1}, {"y": [2]}]],
        "t": (1, (2.5, b"x")),
    }


def test_loading_builds_the_tree_and_empties_the_frozen_root(monkeypatch: Any) -> None:
    monkeypatch.setattr(adopt, "_CHUNK", 3)  # several chunks of flat dicts
    frozen = frozen_sample()
    store = Store(frozen)
    store._check()
    assert frozen == {}
    assert typed(store.snapshot()) == typed(frozen_sample())
    assert type(store.root["users"][9]) is TrackedDict
    assert store.root["mixed"][1]["k"] == thaw_file(FROZEN_FILE)
    replica = Store(marshal.loads(marshal.dumps(store.snapshot())))  # as a checkpoint loads
    assert typed(replica.root) == typed(store.root)


def test_loading_releases_each_chunk_of_flat_dicts_before_copying_it(monkeypatch: Any) -> None:
    monkeypatch.setattr(adopt, "_CHUNK", 3)
    frozen = {"users": [{"id": i} for i in range(10)]}
    users = frozen["users"]
    still_held = []
    copy_chunk = adopt._append_flat_copies

    def spy(dst: Any, items: list[Any], start: int) -> None:
        still_held.append(sum(item is not None for item in users))
        copy_chunk(dst, items, start)

    monkeypatch.setattr(adopt, "_append_flat_copies", spy)
    store = Store(frozen)
    assert still_held == [7, 4, 1, 0]  # the frozen list let go of each chunk first
    assert store.root["users"] == [{"id": i} for i in range(10)]
    assert [user._key for user in store.root["users"]] == list(range(10))


def test_copying_a_user_value_leaves_it_intact() -> None:
    value = [{"id": i} for i in range(10)] + [[1, [2]]]
    before = copy.deepcopy(value)
    store = Store()
    store.begin()
    store.root["v"] = value
    assert value == before
    store.commit("v")


def test_a_frozen_root_holding_a_container_twice_is_refused() -> None:
    shared = [1, [2]]
    with pytest.raises(ValueError, match=r"appears twice, at db\['[ab]'\]"):
        Store({"a": shared, "b": shared})
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(ValueError, match="appears twice"):
        Store({"l": loop})


def test_a_refusal_during_loading_names_its_full_path() -> None:
    # the parts already copied are gone: the message comes from the part still intact
    with pytest.raises(TypeError, match=r"cannot store set at db\['a'\]\[1\]\['k'\]"):
        Store({"z": [[1], {"y": 2}], "a": [1, {"k": {1}}], "b": [[3]]})
    with pytest.raises(ValueError, match="not a frozen File"):
        Store({"a": [{"f": frozenset({1})}]})


def test_reopening_a_database_loads_its_checkpoint(tmp_path: Any) -> None:
    users = [{"id": i, "name": f"u{i}", "tags": ["a"] if i % 7 == 0 else []} for i in range(5000)]
    db = pyzdb.open(tmp_path, fsync="no")
    db["u"] = users
    db.checkpoint()
    db["after"] = {"x": [1]}  # replayed from the journal on top of the checkpoint
    db.close()
    db = pyzdb.open(tmp_path, fsync="no")
    try:
        assert db["u"].get() == users and db["after"].get() == {"x": [1]}
        assert gc.get_freeze_count() > 5000  # the recovered tree is out of the collector's way
        db.execute("del db['u']")
        assert db.query("len(db)") == 1
    finally:
        db.close()
