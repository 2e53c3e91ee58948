"""The store's measured fast paths, each tied to its slow twin on the same inputs.

- `TrackedDict.__setitem__` inlines `trace` and the write gate for the root, and the scalar
  case of the `dict_set` primitive; its twin is the generic mutator path every other mutator
  takes (`trace`, the gate, `Store.adopt`, `dict_set`).
- `TrackedList.__setitem__` and `TrackedList.append` inline the scalar case of `list_splice`;
  their twin calls `list_splice`.
- `pyzdb.storage.raw` binds twelve builtin dict/list methods once; each is the builtin method
  itself, which bypasses the tracked override and records nothing.

A twin pair runs on two identical stores; both must give the same tree, the same effects, the
same undo records, the same error (type and message), and the same tree again after undo.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable
from typing import Any

import pytest

from pyzdb.limits import MAX_DEPTH, SCALAR_TYPES
from pyzdb.plain import freeze
from pyzdb.storage import raw, tracked
from pyzdb.storage.arguments import list_index
from pyzdb.storage.primitives import dict_set, list_splice
from pyzdb.storage.store import Store
from pyzdb.storage.tracked import KEY_FAST, TrackedDict, TrackedList, trace
from pyzdb.values import File, check_key

_MISSING = object()


def slow_dict_setitem(d: TrackedDict, key: Any, value: Any) -> None:
    """``d[key] = value`` the way every other mutator is built (the five steps of `tracked`)."""
    store, path, depth = trace(d)
    rec = tracked._gate(store)
    if key.__class__ not in KEY_FAST:
        check_key(key, path, depth)
    if value.__class__ not in SCALAR_TYPES:
        if dict.get(d, key, _MISSING) is value:
            return  # ``d[k] += [x]`` stores the list it just extended
        value = store.adopt(value, depth, path, key)
    dict_set(d, key, value, rec, path)


def slow_list_setitem(lst: TrackedList, index: Any, value: Any) -> None:
    store, path, depth = trace(lst)
    rec = tracked._gate(store)
    i = list_index(index, len(lst), "list assignment index out of range")
    if value.__class__ not in SCALAR_TYPES:
        if lst[i] is value:
            return
        value = store.adopt(value, depth, path, i)
    list_splice(lst, i, i + 1, [value], rec, path)


def slow_append(lst: TrackedList, value: Any) -> None:
    store, path, depth = trace(lst)
    rec = tracked._gate(store)
    n = len(lst)
    if value.__class__ not in SCALAR_TYPES:
        value = store.adopt(value, depth, path, n)
    list_splice(lst, n, n, [value], rec, path)


def nest(levels: int, wrap: Callable[[Any], Any]) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = wrap(value)
    return value


INITIAL = {
    "a": 1,
    "n": {"x": {"y": 0}, 1: "one", "l": [1, {"z": 2}]},
    "l": [0, [1, 2], {"k": "v"}, "s"],
    # containers at the depth limit: a container stored in them is one level too deep
    "deep": nest(MAX_DEPTH, lambda inner: {"d": inner}),
    "deeplist": nest(MAX_DEPTH, lambda inner: [inner]),
}


def deepest(node: Any) -> Any:
    while True:
        inner = node["d"] if isinstance(node, dict) else node[0]
        if not isinstance(inner, (dict, list)):
            return node
        node = inner


_FROZEN = marshal.dumps(freeze(INITIAL))


def fresh(mode: str) -> tuple[Store, dict[str, Any]]:
    """A store in state `mode` and the containers the cases write to, by name."""
    store = Store(marshal.loads(_FROZEN))
    root = store.root
    targets = {
        "root": root,
        "nested dict": root["n"]["x"],
        "dict in list": root["l"][2],
        "root list": root["l"],
        "nested list": root["l"][1],
        "list in dict": root["n"]["l"],
        "deepest dict": deepest(root["deep"]),
        "deepest list": deepest(root["deeplist"]),
    }
    if mode != "no unit":
        store.begin()
    if mode == "detached":  # containers removed in this unit: writes record undo, no effects
        detached_dict, detached_list = root["n"], root["l"]
        del root["n"]
        del root["l"]
        targets = {
            "root": root,
            "nested dict": detached_dict["x"],
            "dict in list": detached_list[2],
            "root list": detached_list,
            "nested list": detached_list[1],
            "list in dict": detached_dict["l"],
            "deepest dict": deepest(root["deep"]),
            "deepest list": deepest(root["deeplist"]),
        }
    if mode == "read-only":
        store.writable = False
    return store, targets


def undo_records(store: Store) -> str:
    """The open unit's undo records, spelled out (containers by their contents)."""
    assert store._rec is not None
    return repr([(record[0].__name__, *record[1:]) for record in store._rec.log])


def outcome(mode: str, target: str, op: Callable[[Any], None]) -> dict[str, Any]:
    """What `op` did to a fresh store: its error, tree, effects, undo records, and undo.

    Trees, effects and records are compared by repr: it tells True from 1 and 1.0, and a NaN
    equals itself there.
    """
    store, targets = fresh(mode)
    result: dict[str, Any] = {}
    try:
        op(targets[target])
    except Exception as exc:
        result["error"] = (type(exc), str(exc))
    result["tree"] = repr(store.root)
    if store._rec is None:
        return result
    result["effects"] = repr(store._rec.effects)
    result["undo"] = undo_records(store)
    store._check()
    if store.writable:
        store.commit("op")
        result["undone"] = repr(store.undo())
        result["after undo"] = repr(store.root)
    return result


MODES = ["open unit", "detached", "read-only", "no unit"]
DICT_TARGETS = ["root", "nested dict", "dict in list", "deepest dict"]
LIST_TARGETS = ["root list", "nested list", "list in dict", "deepest list"]
FILE = File(digest="ab" * 16, name="f.txt", size=3)

KEYS = {
    "new str": "new",
    "existing str": "a",
    "int": 7,
    "bool over int 1": True,
    "float": 2.5,
    "nan": float("nan"),
    "tuple": (1, "t"),
    "deep tuple": nest(MAX_DEPTH + 5, lambda inner: (inner,)),
    "bytes": b"k",
    "None": None,
    "list (unhashable)": [1],
    "set (unhashable)": {1},
}
VALUES = {
    "int": 5,
    "str": "v",
    "None": None,
    "tuple": (1, (2.5, "x")),
    "file": FILE,
    "dict": {"p": [1, {"q": 2}]},
    "list": [1, [2]],
    "set (refused)": {1},
    "too deep": nest(MAX_DEPTH + 1, lambda inner: [inner]),
}


def same(fast: dict[str, Any], slow: dict[str, Any], case: str) -> None:
    assert fast.keys() == slow.keys(), case
    for key in fast:
        assert fast[key] == slow[key], f"{case}: {key}"


def twins(
    mode: str,
    targets: list[str],
    cases: dict[str, tuple[Callable[[Any], None], Callable[[Any], None]]],
) -> None:
    """Run every (fast, slow) case on every target: the outcomes must be the same."""
    for target in targets:
        for case, (fast, slow) in cases.items():
            same(outcome(mode, target, fast), outcome(mode, target, slow), f"{target}, {case}")


def dict_setitem_cases() -> dict[str, tuple[Callable[[Any], None], Callable[[Any], None]]]:
    cases = {}
    for key_name, key in KEYS.items():
        for value_name, value in VALUES.items():

            def fast(d: Any, k: Any = key, v: Any = value) -> None:
                d[k] = v

            def slow(d: Any, k: Any = key, v: Any = value) -> None:
                slow_dict_setitem(d, k, v)

            cases[f"d[{key_name}] = {value_name}"] = (fast, slow)

    def fast_same(d: Any) -> None:
        for key in list(d):
            d[key] = d[key]

    def slow_same(d: Any) -> None:
        for key in list(d):
            slow_dict_setitem(d, key, d[key])

    cases["d[k] = d[k] for every k"] = (fast_same, slow_same)
    return cases


LIST_INDEXES = {
    "0": 0,
    "-1": -1,
    "True": True,
    "out of range": 99,
    "negative out of range": -99,
    "str": "a",
    "float": 1.0,
}


def list_cases() -> dict[str, tuple[Callable[[Any], None], Callable[[Any], None]]]:
    cases = {}
    for value_name, value in VALUES.items():
        for index_name, index in LIST_INDEXES.items():

            def fast(lst: Any, i: Any = index, v: Any = value) -> None:
                lst[i] = v

            def slow(lst: Any, i: Any = index, v: Any = value) -> None:
                slow_list_setitem(lst, i, v)

            cases[f"l[{index_name}] = {value_name}"] = (fast, slow)

        def fast_append(lst: Any, v: Any = value) -> None:
            lst.append(v)
            lst.append(v)

        def slow_append_twice(lst: Any, v: Any = value) -> None:
            slow_append(lst, v)
            slow_append(lst, v)

        cases[f"l.append({value_name}) twice"] = (fast_append, slow_append_twice)

    def fast_same(lst: Any) -> None:
        for i in range(len(lst)):
            lst[i] = lst[i]

    def slow_same(lst: Any) -> None:
        for i in range(len(lst)):
            slow_list_setitem(lst, i, lst[i])

    cases["l[i] = l[i] for every i"] = (fast_same, slow_same)
    return cases


@pytest.mark.parametrize("mode", MODES)
def test_dict_setitem_matches_its_slow_twin(mode: str) -> None:
    twins(mode, DICT_TARGETS, dict_setitem_cases())


@pytest.mark.parametrize("mode", MODES)
def test_list_setitem_and_append_match_their_slow_twins(mode: str) -> None:
    twins(mode, LIST_TARGETS, list_cases())


# -- the raw aliases --------------------------------------------------------------------------

#: alias name -> (builtin type, method name, arguments after the container)
ALIASES: dict[str, tuple[type, str, tuple[Any, ...]]] = {
    "dget": (dict, "get", ("a", "default")),
    "dset": (dict, "__setitem__", ("new", 1)),
    "ddel": (dict, "__delitem__", ("a",)),
    "dclear": (dict, "clear", ()),
    "dupdate": (dict, "update", ({"a": 2, "b": 3},)),
    "lset": (list, "__setitem__", (0, "x")),
    "ldel": (list, "__delitem__", (1,)),
    "lappend": (list, "append", ("x",)),
    "linsert": (list, "insert", (1, "x")),
    "lextend": (list, "extend", (["x", "y"],)),
}
#: the same aliases on inputs the builtin refuses
REFUSED: dict[str, tuple[Any, ...]] = {
    "dget": ([1],),
    "dset": ([1], 1),
    "ddel": ("missing",),
    "dclear": (1,),
    "dupdate": (1,),
    "lset": (99, "x"),
    "ldel": (99,),
    "lappend": (),
    "linsert": ("a", "x"),
    "lextend": (1,),
}


def test_every_alias_is_the_builtin_method_itself() -> None:
    expected = {name: getattr(kind, method) for name, (kind, method, _) in ALIASES.items()}
    expected.update(dnew=dict.__new__, lnew=list.__new__)
    assert {name: getattr(raw, name) for name in raw.__all__} == expected


def run(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", call())
    except Exception as exc:
        return ("error", type(exc), str(exc))


@pytest.mark.parametrize("name", list(ALIASES))
@pytest.mark.parametrize("refused", [False, True], ids=["accepted", "refused"])
def test_an_alias_on_a_tree_container_does_what_the_builtin_does_and_records_nothing(
    name: str, refused: bool
) -> None:
    kind, method, args = ALIASES[name]
    if refused:
        args = REFUSED[name]
    store = Store({"d": {"a": 1, "b": 2}, "l": [1, 2, 3]})
    store.begin()
    container = store.root["d" if kind is dict else "l"]
    plain = kind(container)
    assert run(lambda: getattr(raw, name)(container, *args)) == run(
        lambda: getattr(kind, method)(plain, *args)
    )
    assert kind(container) == plain
    assert store._rec is not None and store._rec.log == [] and store._rec.effects == []


def test_the_constructor_aliases_make_empty_tree_containers() -> None:
    d, lst = raw.dnew(TrackedDict), raw.lnew(TrackedList)
    assert type(d) is TrackedDict and d == {} and type(lst) is TrackedList and lst == []
    with pytest.raises(TypeError):
        TrackedDict()  # the class itself refuses: only the store makes tree containers
