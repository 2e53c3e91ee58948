"""The data model: what is stored type for type, what is refused (and where), depth, `File`,
the frozen form and detached query results."""

from __future__ import annotations

import collections
import copy
import enum
import gc
import hashlib
import marshal
import types
from typing import Any

import pytest

import pyzdb
from pyzdb.codec import encode_value, expanded_size, measure
from pyzdb.errors import Error, LimitExceeded
from pyzdb.limits import MAX_DEPTH
from pyzdb.plain import freeze, to_plain
from pyzdb.storage import Store, TrackedDict, TrackedList
from pyzdb.values import RESULT_DEPTH, File, check_key, thaw_file, validate

DIGEST = hashlib.sha256(b"blob").hexdigest()
FILE = File(digest=DIGEST, name="b.bin", size=4)


def typed(value: Any) -> Any:
    """A comparable picture of `value` keeping exact types and dict order."""
    if isinstance(value, dict):
        return (type(value).__name__, [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, sorted(map(repr, value)))
    return (type(value).__name__, repr(value))


def nested(depth: int, kind: type = list) -> Any:
    value: Any = kind()
    for _ in range(depth - 1):
        value = kind((value,)) if kind is tuple else [value]
    return value


STORABLE = {
    "None": None,
    "True": True,
    "False": False,
    "int": 7,
    "negative": -3,
    "big int": 2**100,
    "float": 1.5,
    "-0.0": -0.0,
    "inf": float("inf"),
    "str": "é\x00",
    "bytes": b"\x00\xff",
    "tuple": (1, (2.0, "a", None, b"")),
    "empty tuple": (),
    "list": [1, [2, [3]]],
    "empty list": [],
    "dict": {"a": {"b": [1]}},
    "empty dict": {},
    "File": FILE,
    "tuple with File": (FILE, (1, FILE)),
    "dict keys": {
        2: "int",
        True: "bool",
        2.5: "float",
        None: "none",
        b"k": "bytes",
        (1, ("a", None)): "tuple",
        "": "str",
        False: 0,
    },
    "list of flat dicts": [{"id": i, "name": f"u{i}"} for i in range(5)],
    "flat dicts and one nested": [{"a": 1}, {"b": [2]}, {"c": 3}],
    "dict of flat dicts": {"x": {"a": 1}, "y": {"b": 2.0}},
}


@pytest.mark.parametrize("name", list(STORABLE))
def test_storable_values_round_trip_type_for_type(name: str) -> None:
    value = STORABLE[name]
    store = Store()
    store.begin()
    store.root["v"] = value
    store._check()
    assert typed(to_plain(store.root["v"])) == typed(value)
    effects = store.commit("store")

    replica = Store()
    for effect in marshal.loads(marshal.dumps(effects)):  # as the journal would carry them
        replica.apply(effect)
    assert typed(to_plain(replica.root["v"])) == typed(value)

    frozen = marshal.loads(marshal.dumps(store.snapshot()))
    reloaded = Store(frozen)
    reloaded._check()
    assert typed(to_plain(reloaded.root["v"])) == typed(value)
    assert store.undo() is not None and "v" not in store.root


def test_stored_containers_are_tracked_all_the_way_down() -> None:
    store = Store({"v": {"a": [{"b": [1]}]}})
    v = store.root["v"]
    assert type(v) is TrackedDict and type(v["a"]) is TrackedList
    assert type(v["a"][0]) is TrackedDict and type(v["a"][0]["b"]) is TrackedList


# -- refusals ------------------------------------------------------------------------------

Point = collections.namedtuple("Point", "x y")


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


REFUSED = {
    "set": {1},
    "frozenset": frozenset({1}),
    "bytearray": bytearray(b"x"),
    "memoryview": memoryview(b"x"),
    "complex": 1j,
    "function": lambda: 0,
    "object": object(),
    "range": range(3),
    "type": int,
    "module": types,
    "OrderedDict": collections.OrderedDict(),
    "defaultdict": collections.defaultdict(list),
    "Point": Point(1, 2),
    "Colour": Colour.RED,
    "Name": Name("x"),
    "ellipsis": Ellipsis,
    "generator": (i for i in ()),
    "dict_keys": {}.keys(),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_values_name_type_and_path(name: str) -> None:
    store = Store({"a": [0, 1, 2]})
    store.begin()
    with pytest.raises(TypeError) as info:
        store.root["a"][2] = {"ok": 1, "bad": [0, REFUSED[name]]}
    assert str(info.value).startswith(f"cannot store {name} at db['a'][2]['bad'][1]: ")
    assert "pyzdb stores None, bool, int, float, str, bytes, tuple, list, dict and File" in str(
        info.value
    )
    assert store.root == {"a": [0, 1, 2]}
    assert store.commit("refused") == [] and store.history() == []


def test_tuples_hold_only_immutable_values() -> None:
    store = Store()
    store.begin()
    for bad, where in (
        ((1, [2]), "db['t'][1]"),
        ((1, (2, {"a": 1})), "db['t'][1][1]"),
        ((FILE, {3}), "db['t'][1]"),
    ):
        with pytest.raises(TypeError, match=r"inside a tuple at " + where.replace("[", r"\[")):
            store.root["t"] = bad
    assert store.commit("refused") == []


@pytest.mark.parametrize(
    "key", [frozenset({1}), FILE, object(), (1, frozenset()), 1j, Name("k"), Colour.RED]
)
def test_refused_keys(key: Any) -> None:
    store = Store({"d": {}})
    store.begin()
    with pytest.raises(TypeError, match=r"as a dict key at db\['d'\]"):
        store.root["d"][key] = 1
    with pytest.raises(TypeError, match=r"as a dict key at db\['x'\]\['in'\]"):
        store.root["x"] = {"in": {key: 1}}
    with pytest.raises(TypeError, match="as a dict key"):
        store.root["d"].setdefault(key, 1)
    assert store.root == {"d": {}} and store.commit("refused") == []


BAD = {1, 2}
REFUSING_MUTATORS = {
    "append": lambda r: r["l"].append([1, BAD]),
    "extend, bad last": lambda r: r["l"].extend([1, 2, [BAD]]),
    "+=": lambda r: r["l"].__iadd__([1, BAD]),
    "insert": lambda r: r["l"].insert(0, BAD),
    "l[i]=": lambda r: r["l"].__setitem__(0, BAD),
    "l[a:b]=": lambda r: r["l"].__setitem__(slice(0, 1), [1, BAD]),
    "l[::-1]=": lambda r: r["l"].__setitem__(slice(None, None, -1), [1, BAD]),
    "update, bad in the middle": lambda r: r["d"].update([("a", 1), ("b", BAD), ("c", 3)]),
    "update kwargs": lambda r: r["d"].update(a=1, b=BAD),
    "|=": lambda r: r["d"].__ior__({"a": 1, "b": BAD}),
    "setdefault": lambda r: r["d"].setdefault("s", BAD),
    "d[k]=": lambda r: r["d"].__setitem__("k", {"deep": BAD}),
}


@pytest.mark.parametrize("name", list(REFUSING_MUTATORS))
def test_refusal_leaves_nothing_half_written(name: str) -> None:
    store = Store({"l": [0, 1], "d": {"z": 0}})
    store.begin()
    with pytest.raises(TypeError, match="cannot store set"):
        REFUSING_MUTATORS[name](store.root)
    assert store.root == {"l": [0, 1], "d": {"z": 0}}
    assert store._rec.log == [] and store._rec.effects == []
    store.rollback()


# -- depth ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [list, tuple])
def test_depth_limit_counts_from_the_root(kind: type) -> None:
    store = Store()
    store.begin()
    store.root["ok"] = nested(MAX_DEPTH, kind)
    with pytest.raises(LimitExceeded) as info:
        store.root["deep"] = nested(MAX_DEPTH + 1, kind)
    assert info.value.budget == "depth" and "db['deep']" in str(info.value)
    assert "deep" not in store.root
    store._check()


def test_depth_limit_below_the_top() -> None:
    store = Store()
    store.begin()
    store.root["a"] = nested(MAX_DEPTH - 1)
    innermost = store.root["a"]
    while innermost:
        innermost = innermost[0]
    innermost.append([])  # a container at depth MAX_DEPTH: allowed
    with pytest.raises(LimitExceeded):
        innermost.append([[]])
    with pytest.raises(LimitExceeded):
        innermost[0].append([])
    with pytest.raises(LimitExceeded):
        innermost.append({"k": (1,)})
    innermost[0].append("scalars sit anywhere")
    store._check()


def test_key_tuple_depth() -> None:
    store = Store()
    store.begin()
    store.root[nested(MAX_DEPTH, tuple)] = 1
    with pytest.raises(LimitExceeded):
        store.root[nested(MAX_DEPTH + 1, tuple)] = 1
    store._check()


def test_frozen_root_is_validated_too() -> None:
    with pytest.raises(LimitExceeded):
        Store({"a": nested(MAX_DEPTH + 1)})
    with pytest.raises(TypeError, match=r"cannot store set at db\['a'\]"):
        Store({"a": {1}})
    with pytest.raises(TypeError):
        Store([1])  # type: ignore[arg-type]


def test_hostile_deep_tuple_does_not_crash() -> None:
    # A tuple this deep crashes CPython when hashed: nothing may hash it or recurse into it.
    hostile: Any = ()
    for _ in range(150_000):
        hostile = (hostile,)
    store = Store({"d": {"a": 1}, "l": [1]})
    store.begin()
    with pytest.raises(LimitExceeded):
        store.root["v"] = hostile
    with pytest.raises(LimitExceeded):
        store.root["v"] = [1, {"k": hostile}]
    with pytest.raises(LimitExceeded):
        store.root[hostile] = 1
    with pytest.raises(LimitExceeded):
        store.root["d"].update([(hostile, 1)])
    with pytest.raises(LimitExceeded):
        store.root["d"].setdefault(hostile, 1)
    with pytest.raises(KeyError) as info:
        del store.root["d"][hostile]
    assert "nested deeper" in str(info.value)
    assert store.root["d"].pop(hostile, "default") == "default"
    with pytest.raises(LimitExceeded):
        store.root["l"].append(hostile)
    with pytest.raises(LimitExceeded):
        validate(hostile)
    with pytest.raises(LimitExceeded):
        check_key(hostile)
    with pytest.raises(LimitExceeded):
        to_plain([hostile])
    assert store.root == {"d": {"a": 1}, "l": [1]}
    deep_list: Any = []
    for _ in range(150_000):
        deep_list = [deep_list]
    with pytest.raises(LimitExceeded):
        store.root["v"] = deep_list
    with pytest.raises(LimitExceeded):
        to_plain(deep_list)
    store.rollback()


# -- File ----------------------------------------------------------------------------------


def test_file_from_path_and_bytes(tmp_path: Any) -> None:
    path = tmp_path / "report.txt"
    path.write_bytes(b"blob")
    for f in (File(str(path)), pyzdb.File(path), File.from_path(path)):
        assert (f.digest, f.name, f.size, f.data) == (DIGEST, "report.txt", 4, b"blob")
        assert f == File(digest=DIGEST, name="report.txt", size=4) != FILE
    assert File(path, name="renamed").name == "renamed"
    made = File.from_bytes(b"blob", "b.bin")
    assert made == FILE and hash(made) == hash(FILE) and made.read() == b"blob"
    assert File(data=bytearray(b"blob"), name="b.bin", digest=DIGEST, size=4) == FILE
    assert repr(FILE) == f"File(digest={DIGEST!r}, name='b.bin', size=4)"
    assert pyzdb.File is File


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"digest": "../../etc/passwd", "name": "x", "size": 1}, ValueError),
        ({"digest": DIGEST.upper(), "name": "x", "size": 1}, ValueError),
        ({"digest": DIGEST, "name": "x", "size": -1}, ValueError),
        ({"digest": DIGEST, "name": "x", "size": True}, ValueError),
        ({"digest": DIGEST, "name": b"x", "size": 1}, TypeError),
        ({"digest": DIGEST, "name": "x"}, TypeError),
        ({"data": "text", "name": "x"}, TypeError),
        ({"data": b"blob", "name": "x", "size": 5}, ValueError),
        ({"data": b"blob", "name": "x", "digest": "0" * 64}, ValueError),
    ],
)
def test_file_refuses_bad_fields(kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        File(**kwargs)


def test_file_is_immutable_and_needs_a_reader() -> None:
    with pytest.raises(AttributeError):
        FILE.name = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del FILE.size
    with pytest.raises(Error, match="no blob store attached"):
        FILE.read()
    asked = []
    readable = FILE.with_reader(lambda digest: asked.append(digest) or b"blob")
    assert readable.read() == b"blob" and asked == [DIGEST]
    assert readable == FILE and FILE._reader is None
    assert copy.copy(FILE) is FILE and copy.deepcopy(FILE) is FILE
    with pytest.raises(TypeError):
        File("path", digest=DIGEST)


def test_adoption_hands_pending_data_to_the_blob_sink() -> None:
    blobs: dict[str, bytes] = {}

    def sink(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    store = Store(blob_sink=sink)
    store.begin()
    pending = File.from_bytes(b"blob", "b.bin")
    store.root["f"] = pending
    store.root["t"] = (1, (File.from_bytes(b"two", "2"),))
    store.root["r"] = FILE.with_reader(lambda d: b"")
    effects = store.commit("files")
    assert blobs == {DIGEST: b"blob", hashlib.sha256(b"two").hexdigest(): b"two"}
    stored = store.root["f"]
    assert stored == pending and stored.data is None
    assert store.root["t"][1][0].data is None and store.root["r"]._reader is None
    assert effects[0] == ("set", (), "f", frozenset({("pyzdb.File", DIGEST, "b.bin", 4)}))
    replica = Store()
    for effect in effects:
        replica.apply(effect)
    assert replica.root == store.root and type(replica.root["t"][1][0]) is File


def test_without_a_sink_pending_data_stays_in_memory() -> None:
    store = Store()
    store.begin()
    store.root["f"] = File.from_bytes(b"blob", "b.bin")
    assert store.root["f"].read() == b"blob"
    store.commit("f")


def test_thaw_file_refuses_other_frozensets() -> None:
    assert thaw_file(frozenset({("pyzdb.File", DIGEST, "b.bin", 4)})) == FILE
    for bad in (frozenset(), frozenset({1}), frozenset({("other", DIGEST, "n", 1)})):
        with pytest.raises(ValueError):
            thaw_file(bad)
    with pytest.raises(ValueError):
        Store({"f": frozenset({("x",)})})


# -- freeze --------------------------------------------------------------------------------


def test_freeze_gives_plain_marshal_able_copies() -> None:
    value = {
        "l": [1, (FILE, 2)],
        "fd": [{"a": 1}, {"b": 2}],
        "mixed": [{"a": 1}, {"b": [2]}],
        "dd": {"x": {"a": 1}},
        "f": FILE,
        "t": (1, 2),
    }
    store = Store(freeze(value))
    frozen = freeze(store.root)
    marker = frozenset({("pyzdb.File", DIGEST, "b.bin", 4)})
    assert frozen == {
        "l": [1, (marker, 2)],
        "fd": [{"a": 1}, {"b": 2}],
        "mixed": [{"a": 1}, {"b": [2]}],
        "dd": {"x": {"a": 1}},
        "f": marker,
        "t": (1, 2),
    }
    assert marshal.loads(marshal.dumps(frozen)) == frozen
    for node in (frozen, frozen["fd"][0], frozen["mixed"][1]["b"], frozen["dd"]["x"]):
        assert type(node) in (dict, list)
    frozen["fd"][0]["a"] = 99
    assert store.root["fd"][0]["a"] == 1
    assert freeze(7) == 7 and freeze(FILE) == marker and freeze((1, 2)) == (1, 2)
    with pytest.raises(TypeError):
        freeze({1})
    with pytest.raises(TypeError):
        freeze([{1}])


def test_bulk_walks_restore_the_gc_state() -> None:
    was = gc.isenabled()
    try:
        gc.enable()
        freeze([{"a": 1}])
        Store({"a": [{"b": 1}]})
        assert gc.isenabled()
        gc.disable()
        freeze([{"a": 1}])
        to_plain(Store({"a": [{"b": 1}]}).root)
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()


# -- to_plain ------------------------------------------------------------------------------


def test_to_plain_copies_data_type_for_type() -> None:
    value = {
        "t": (1, (2, "x")),
        "s": {1, 2},
        "fs": frozenset({"a"}),
        "b": True,
        "i": 1,
        "n": None,
        "by": b"x",
        "f": FILE,
        (1, 2): [1.5, {3: [4]}],
        0: [{"a": 1}],
    }
    copied = to_plain(value)
    assert typed(copied) == typed(value)
    assert copied is not value and copied[(1, 2)] is not value[(1, 2)]
    stored = {k: v for k, v in value.items() if k not in ("s", "fs")}  # the tree has no sets
    store = Store(freeze({"v": stored}))
    result = to_plain(store.root)
    assert typed(result["v"]) == typed(stored)
    stack = [result]
    while stack:
        node = stack.pop()
        assert type(node) in (dict, list)
        stack.extend(
            v
            for v in (node.values() if isinstance(node, dict) else node)
            if isinstance(v, (dict, list))
        )
    result["v"][0][0]["a"] = 2
    assert store.root["v"][0][0]["a"] == 1


def test_to_plain_of_mixed_tracked_and_plain() -> None:
    store = Store({"u": [{"age": 3}, {"age": 1}]})
    result = to_plain(sorted(store.root["u"], key=lambda u: u["age"]) + [(1, [2])])
    assert result == [{"age": 1}, {"age": 3}, (1, [2])]
    assert type(result[0]) is dict


@pytest.mark.parametrize(
    "name, value",
    [
        ("function", lambda: 0),
        ("generator", (i for i in ())),
        ("range", range(3)),
        ("dict_keys", {}.keys()),
        ("dict_items", {}.items()),
        ("type", int),
        ("module", types),
        ("ellipsis", ...),
        ("complex", 1j),
        ("code", compile("1", "<q>", "eval")),
        ("bytearray", bytearray()),
        ("object", object()),
        ("builtin_function_or_method", len),
    ],
)
def test_to_plain_refuses_non_data(name: str, value: Any) -> None:
    with pytest.raises(TypeError, match=f"query result contains {name} at result"):
        to_plain(value)
    with pytest.raises(TypeError, match=rf"query result contains {name} at result\[1\]\['k'\]"):
        to_plain([1, {"k": value}])
    with pytest.raises(TypeError, match=f"query result contains {name}"):
        to_plain((1, [value]))


def test_to_plain_refuses_cycles_and_depth_but_keeps_shared_values() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(LimitExceeded, match="cycle") as info:
        to_plain(loop)
    assert info.value.budget == "depth"
    with pytest.raises(LimitExceeded):
        to_plain(nested(10, list), max_depth=5)
    assert to_plain(nested(5, list), max_depth=5) == nested(5, list)
    shared: Any = Store({"x": [1]}).root["x"]  # tracked: marshal refuses, the walk memoises
    for _ in range(64):  # 2**64 paths through 65 objects
        shared = [shared, shared]
    copied = to_plain(shared)
    assert copied[0] is copied[1] and type(copied[0]) is list
    shared = [1]
    for _ in range(64):
        shared = [shared, {"k": shared}]
    copied = to_plain(shared)
    assert copied[0] is copied[1]["k"] and copied is not shared


# -- expanded size ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        [{"a": 1, "b": "x"}, {"b": "y", "a": 2}],  # records, keys in another order
        [{"a": 1}, {"b": 2}],  # same count, other keys
        [{"a": 1, 2: "x"}, {"a": 1, 2.0: "y"}],  # keys that are equal across types
        [{"a": 1}, {"a": [1, 2]}],  # a column that is not all scalars
        [(1, "x"), [2.5, None], {1, 2}, frozenset({b"z"})],
        {"k": [2**64, -(2**63) - 1, 2**200, -(2**200)], "s": ["é" * 10, "\ud800", "a" * 40]},
    ],
)
def test_expanded_size_bounds_the_wire_size(value: Any) -> None:
    wire = len(encode_value(value))
    assert wire <= expanded_size(value, 10**9)
    assert wire <= expanded_size(value, wire) <= wire + 16


def test_measuring_reads_dicts_without_calling_missing() -> None:
    value = [collections.defaultdict(list, a=1), collections.defaultdict(list, b=2)]
    measure(value, 10**6)
    assert [dict(d) for d in value] == [{"a": 1}, {"b": 2}]


def test_measure_says_what_detaching_needs() -> None:
    store = Store({"l": [{"a": 1}], "f": [FILE]})
    assert measure([1, "x", (2, 3)], 1000)[1:3] == (True, False)
    assert measure([{"a": 1}] * 3, 1000)[1:3] == (True, False)
    assert measure(store.root["l"], 1000)[1:3] == (False, False)
    assert measure([store.root["l"]], 1000)[1:3] == (False, False)
    assert measure(store.root["f"], 1000)[1:3] == (False, True)
    assert measure([range(3)], 1000)[:3] == (2, False, False)  # not data: one byte, never plain
    assert measure(nested(RESULT_DEPTH + 1, list), 10**6).plain is True  # to_plain's limit
    assert measure(nested(RESULT_DEPTH + 2, list), 10**6).plain is False  # it refuses this


def test_expanded_size_stops_at_the_limit() -> None:
    assert expanded_size(["x" * 1000] * 10**6, 10_000) > 10_000  # one C pass over the lengths
    shared: Any = [list(range(1000))]
    for _ in range(100):
        shared = [shared, shared]
    assert expanded_size(shared, 10**6) > 10**6
