"""The C-speed paths for collections of records (pyzdb.bulk and its callers).

Each fast path must give what the slow one gave: the wire-size bound is never under msgpack's
real size and hands anything exotic to the exact walk; records stored, frozen, read back,
journaled and recovered keep every type; the tree never shares a container with a result or
with the value it was stored from; every budget of the slow path still refuses.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pyzdb
from pyzdb import plain as plain_module
from pyzdb.bulk import nested_lists, wire_bound
from pyzdb.codec import MARKED_TYPES, decode_value, encode_value, encode_wire, measure
from pyzdb.codec.sizes import _Sizer
from pyzdb.errors import LimitExceeded
from pyzdb.limits import MAX_DEPTH, SCALAR_TYPES
from pyzdb.plain import freeze
from pyzdb.storage import adopt, budget
from pyzdb.storage.store import Store
from pyzdb.storage.tracked import TrackedDict, TrackedList
from pyzdb.values import RESULT_DEPTH, File

PLAIN = SCALAR_TYPES | {list, dict, tuple, set, frozenset}
BOUND_ARGS = {
    "scalars": SCALAR_TYPES,
    "dicts": frozenset({dict, TrackedDict}),
    "sequences": frozenset({list, TrackedList, tuple, set, frozenset}),
    "plain_types": PLAIN,
    "marked": MARKED_TYPES,
}


def records(count: int) -> list[dict]:
    return [
        {
            "id": i,
            "name": f"user{i}",
            "age": i % 90,
            "city": ["Oslo", "Lima"][i % 2],
            "tags": [f"t{i % 7}", "x"],
        }
        for i in range(count)
    ]


VALUES = [
    records(50),
    ["é" * 300, "\U0001f600" * 100, "\ud800" * 10],  # 2-, 4- and 3-byte UTF-8
    [2**64, -(2**200), 2**63 - 1, -(2**63), 255, -33],
    {(1, "a"): (b"x" * 300, 1.5), 7: {frozenset({1, 2}), None}, None: [True, False]},
    [["x" * 1000] * 50, {"k" * 70_000: 1}],
    [[[[[]]]], {}, (), set()],
]


@pytest.mark.parametrize("value", VALUES)
def test_the_bound_is_never_under_the_wire_size(value):
    wire = len(encode_value(value))
    bound, plain, native = wire_bound(value, 10**9, RESULT_DEPTH, **BOUND_ARGS)
    assert wire <= bound
    assert plain
    assert measure(value, 10**9).size >= wire
    assert native == (
        "tuple" not in repr(value) and "frozenset" not in repr(value) and "set()" not in repr(value)
    )
    assert encode_wire(value, native) == encode_value(value)


def test_native_encoding_of_the_tree_gives_the_strict_encoders_bytes():
    """The store's subclasses, big ints and lone surrogates: same bytes, or the strict path."""

    def value() -> dict:
        return {"users": records(20), "big": [2**70, -(2**64)], "odd": "\ud800", 3: None}

    store = Store(value())  # (a store consumes the value it is built from)
    found = measure(store.root, 10**9)
    assert found.native and not found.plain
    assert encode_wire(store.root, True) == encode_value(value())
    assert decode_value(encode_wire(store.root, True), 10**9) == value()


def test_the_bound_leaves_files_cycles_depth_and_non_data_to_the_exact_walk():
    file = File(digest="a" * 64, name="f", size=1)
    cycle: list = []
    cycle.append(cycle)
    deep: list = []
    for _ in range(RESULT_DEPTH + 5):
        deep = [deep]
    for value in ([file], cycle, deep, [iter([])], [bytearray(3)]):
        assert wire_bound(value, 10**9, RESULT_DEPTH, **BOUND_ARGS) is None
    assert measure([file], 10**6).files
    with pytest.raises(LimitExceeded):
        measure(cycle, 10**6)


def test_a_bomb_stops_the_bound_before_its_expansion_is_built():
    big = list(range(1000))
    bomb = [[big] * 1000] * 1000  # 10**9 elements on the wire
    bound = wire_bound(bomb, 64 * 2**20, RESULT_DEPTH, **BOUND_ARGS)[0]
    assert bound > 64 * 2**20
    assert measure(bomb, 64 * 2**20).size > 64 * 2**20
    shared = ["x" * 10**6] * 1000  # 1 GB on the wire, 1 MB in memory
    assert wire_bound(shared, 10**8, RESULT_DEPTH, **BOUND_ARGS)[0] > 10**8


def test_records_are_recognised_in_c_and_other_shapes_are_not():
    assert nested_lists(records(10), SCALAR_TYPES, frozenset({dict}), frozenset({list})) == 10
    assert nested_lists([{"a": 1}], SCALAR_TYPES, frozenset({dict}), frozenset({list})) == 0
    for other in (
        [{"a": [[1]]}],
        [{"a": {"b": 1}}],
        [{"a": (1,)}],
        [{"a": 1}, [1]],
        [{"a": [File(digest="a" * 64, name="f", size=1)]}],
    ):
        assert nested_lists(other, SCALAR_TYPES, frozenset({dict}), frozenset({list})) is None


def test_stored_records_are_tracked_copies_with_their_lists_tracked_and_unshared():
    store = Store()
    tags = ["a", "b"]
    value = [{"id": i, "tags": tags} for i in range(3)]  # one list, referred to three times
    store.begin()
    store.root["users"] = value
    effects = store.commit("store")
    users = store.root["users"]
    assert users == value and type(users) is TrackedList
    for i, user in enumerate(users):
        assert type(user) is TrackedDict and user._parent is users and user._key == i
        assert type(user["tags"]) is TrackedList and user["tags"] is not tags
        assert user["tags"]._parent is user and user["tags"]._key == "tags"
    assert len({id(user["tags"]) for user in users}) == 3
    store.begin()
    users[1]["tags"].append("c")
    assert store.commit("append") == [("ins", ("users", 1, "tags"), 2, "c")]
    assert tags == ["a", "b"] and users[0]["tags"] == ["a", "b"]
    store.undo()
    assert users[1]["tags"] == ["a", "b"]
    frozen = effects[0][3]
    assert frozen == value and type(frozen[0]) is dict and type(frozen[0]["tags"]) is list
    assert frozen[0]["tags"] is not frozen[1]["tags"]


def test_freezing_records_gives_plain_copies():
    store = Store({"users": records(20)})
    frozen = freeze(store.root["users"])
    assert frozen == records(20)
    assert {type(r) for r in frozen} == {dict} and {type(r["tags"]) for r in frozen} == {list}
    assert frozen[0]["tags"] is not store.root["users"][0]["tags"]


def test_the_container_cap_counts_the_lists_of_records(monkeypatch):
    monkeypatch.setattr(budget, "MAX_ADOPT_NODES", 27)
    with pytest.raises(LimitExceeded):  # the top, 14 records and their 14 lists: 29 > 27
        adopt._build(records(14), 1, None, False, budget.Room())
    room = budget.Room()
    adopt._build(records(13), 1, None, False, room)  # 1 + 13 + 13 = 27
    assert room.left == 0


EXOTIC = {"t": (1, (2, b"b")), 5: 2**100, (1, "k"): [None, 1.5, {"n": -(2**70)}]}


def test_records_and_exotic_values_read_back_type_for_type(db):
    db["users"] = records(300)
    db["exotic"] = EXOTIC
    db["mixed"] = [EXOTIC, {"id": 1, "tags": ["a"]}]
    users = db["users"].get()
    assert users == records(300)
    assert {type(u) for u in users} == {dict} and {type(u["tags"]) for u in users} == {list}
    exotic = db["exotic"].get()
    assert exotic == EXOTIC
    assert type(exotic["t"]) is tuple and type(exotic["t"][1]) is tuple
    assert type(exotic[5]) is int and (1, "k") in exotic
    assert db["mixed"].get() == [EXOTIC, {"id": 1, "tags": ["a"]}]
    users[0]["tags"].append("changed")  # the result is the caller's: the tree is untouched
    assert db["users"][0]["tags"].get() == ["t0", "x"]
    assert db.query("[u for u in db['users'] if u['id'] % 100 == 7]") == [
        u for u in records(300) if u["id"] % 100 == 7
    ]


def test_a_result_over_its_budget_is_refused_on_the_fast_path_too(db):
    db.execute("db['big'] = ['x' * 1_000_000] * 80")  # 80 MB on the wire, 1 MB in memory
    with pytest.raises(pyzdb.LimitExceeded):
        db["big"].get()
    with pytest.raises(pyzdb.LimitExceeded):
        db.query("[db['big']] * 2")
    assert db.query("len(db['big'])") == 80


def test_records_survive_a_restart_and_a_checkpoint(tmp_path):
    path = tmp_path / "data"
    db = pyzdb.open(path)
    db.execute(
        "db['users'] = [{'id': i, 'name': 'user%d' % i, 'tags': ['t%d' % i, 'x']} "
        "for i in range(n)]",
        n=500,
    )
    db["users"][3]["tags"].append("y")
    db.close()
    db = pyzdb.open(path)
    users = db["users"].get()
    assert users[3]["tags"] == ["t3", "x", "y"] and users[499]["name"] == "user499"
    db.checkpoint()
    db.close()
    db = pyzdb.open(path)
    assert db["users"].get() == users
    db.close()


def test_printf_fast_path_keeps_its_prices(db):
    assert db.query("['user%d' % i for i in range(3)]") == ["user0", "user1", "user2"]
    assert db.query("'%s!' % 'x'") == "x!"
    assert db.query("'%d' % 1e30") == str(int(1e30))
    with pytest.raises(pyzdb.LimitExceeded):
        db.query("'%s%s' % ('x' * 6_000_000, 'y' * 6_000_000)")
    with pytest.raises(pyzdb.LimitExceeded):
        db.query("'%s-----' % ('x' * 9_999_999)")  # one conversion, over by 4
    with pytest.raises(TypeError):
        db.query("'%d' % 'x'")


def test_a_request_raises_the_gc_threshold_only_while_it_runs(tmp_path):
    import gc

    db = pyzdb.open(tmp_path / "data")
    before = gc.get_threshold()
    db.execute("db['x'] = [[i] for i in range(1000)]")
    with pytest.raises(ZeroDivisionError):
        db.execute("db['y'] = 1\n1 / 0")
    assert gc.get_threshold() == before
    assert db.query("'y' in db") is False
    db.close()


# -- every fast path against its slow twin, on one table of values ---------------------------
#
# The size model has three ways to size a value (`bulk.wire_bound` in C, `_Sizer` with C-level
# bounds, `_Sizer` counting exactly); adoption, freezing and detaching each have a C-level copy
# for collections of records beside their general walk. Each pair must agree: a bound is never
# under the exact size and never turns a refusal into an acceptance (or back), and a copy is the
# same copy, type for type, with the same refusals and messages.


def nested(depth: int, kind: type = list, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = kind([value])
    return value


def _cycle() -> list:
    cycle: list = []
    cycle.append({"again": cycle})
    return cycle


FILE = File(digest="a" * 64, name="f", size=1)
TRACKED = Store(
    {"users": records(30), "odd": [2**70, "\ud800", (1, (2, b"b")), FILE], "f": FILE}
).root
BIG = list(range(300))
TAGS = ["a", "b"]

SIZE_TABLE: dict[str, Any] = {
    "records": records(200),
    "tracked records": TRACKED["users"],
    "tracked tree": TRACKED,
    "file": [FILE],
    "file with pending data": {"f": File.from_bytes(b"x" * 300, "\u00e9.bin")},
    "bytearray and memoryview": [bytearray(b"abc"), memoryview(b"xyz")],
    "nan keys and values": {float("nan"): 1, 2.5: float("nan")},
    "nan in records": [{"a": float("nan")}, {"a": 1.0}],
    "deep lists": nested(RESULT_DEPTH - 1),
    "lists past the result depth": nested(RESULT_DEPTH + 3),
    "deep tuples": nested(RESULT_DEPTH - 1, tuple),
    "shared lists": [[BIG] * 10] * 10,
    "shared records": [{"id": 1, "tags": TAGS}] * 50,
    "shared long non-ascii str": ["\u00e9" * 5000] * 20,
    "ints of both signs": [-(2**63), 2**64 - 1, -33, 128, -129, *range(-5000, 5000, 7)],
    "big ints": [2**64, -(2**64), 2**200, -(2**63) - 1],
    "records with other keys": [{"a": 1, "b": 2}, {"a": 1, "c": 3}],
    "records with mixed key types": [{1: "x"}, {1.0: "y"}, {True: "z"}, {None: 0}],
    "mixed leaves": [None, True, 1.5, "s", b"b", (1, "t"), {frozenset({1}), 2}, frozenset()],
    "empties": [[], {}, (), set(), frozenset(), "", b""],
    "long containers": [list(range(70_000)), {str(i): i for i in range(20)}, "k" * 70_000],
    "tuple keys": {(1, "a"): (b"x" * 300, 1.5), (2, (3,)): None},
    "surrogates and emoji": ["\ud800" * 10, "\U0001f600" * 100, "\u00e9" * 40],
    "tuples of records": [(i, str(i), [i]) for i in range(100)],
    "sets": [{i, -i} for i in range(50)],
}

NOT_ENCODABLE: dict[str, Any] = {
    "cycle": _cycle(),
    "self-containing dict": (lambda d: d.update(me=d) or d)({}),
    "not data": [range(3), iter([])],
}


def refused_by(size: Any, limit: int) -> bool:
    """Whether a size function refuses `limit`: over it, or a `LimitExceeded` of its own."""
    try:
        return size(limit) > limit
    except LimitExceeded:
        return True


def check_sizes_agree(value: Any, wire: int | None) -> None:
    exact = _Sizer(10**12, True).run(value)
    bounded = _Sizer(10**12, False).run(value)
    assert (bounded.plain, bounded.files) == (exact.plain, exact.files)
    assert bounded.size >= exact.size
    if wire is not None:
        assert exact.size >= wire
    fast = wire_bound(value, 10**12, RESULT_DEPTH, **BOUND_ARGS)
    if fast is not None:
        assert fast[0] >= exact.size and fast[1] == exact.plain
        if fast[2]:  # native: the hookless encoder writes the strict encoder's bytes
            assert encode_wire(value, True) == encode_value(value)
    for limit in {0, 1, exact.size // 2, exact.size - 1, exact.size, exact.size + 1}:
        limit = max(limit, 0)
        verdict = refused_by(lambda n: _Sizer(n, True).run(value).size, limit)
        assert refused_by(lambda n: measure(value, n).size, limit) == verdict, limit
        if not refused_by(lambda n: _Sizer(n, False).run(value).size, limit):
            assert not verdict, limit  # a bound accepts only what the exact walk accepts


@pytest.mark.parametrize("name", SIZE_TABLE)
def test_the_size_bounds_and_the_exact_walk_agree(name: str) -> None:
    value = SIZE_TABLE[name]
    check_sizes_agree(value, len(encode_value(value)))


@pytest.mark.parametrize("name", NOT_ENCODABLE)
def test_the_size_paths_refuse_alike_what_cannot_be_encoded(name: str) -> None:
    value = NOT_ENCODABLE[name]
    assert wire_bound(value, 10**12, RESULT_DEPTH, **BOUND_ARGS) is None
    for limit in (0, 10, 10**6):
        verdict = refused_by(lambda n: _Sizer(n, True).run(value).size, limit)
        assert refused_by(lambda n: measure(value, n).size, limit) == verdict


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=40) | st.sampled_from(["\ud800", "\u00e9" * 40, "\U0001f600"]),
    st.binary(max_size=300),
)
KEYS = SCALARS | st.tuples(SCALARS, SCALARS)
LEAVES = SCALARS | st.just(FILE) | st.builds(bytearray, st.binary(max_size=20))


def _containers(children: Any) -> Any:
    return st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=6).map(tuple),
        st.dictionaries(KEYS, children, max_size=6),
        st.frozensets(SCALARS, max_size=6),
        st.sets(KEYS, max_size=6),
        st.tuples(children, st.integers(1, 30)).map(lambda shared: [shared[0]] * shared[1]),
        st.lists(st.dictionaries(st.sampled_from("abc"), SCALARS, max_size=3), max_size=8),
    )


VALUES_ST = st.recursive(LEAVES, _containers, max_leaves=60)


@settings(max_examples=300, deadline=None)
@given(VALUES_ST)
def test_the_size_paths_agree_on_generated_values(value: Any) -> None:
    check_sizes_agree(value, len(encode_value(value)))


def typed(value: Any) -> Any:
    """`value` spelled with every type (and NaN) visible, so equal means same type for type."""
    cls = type(value)
    if cls is float:
        return (cls, repr(value))
    if isinstance(value, dict):
        return (cls, [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (cls, [typed(item) for item in value])
    if isinstance(value, (set, frozenset)):
        return (cls, sorted(map(repr, value)))
    return (cls, value)


def containers(value: Any) -> set[int]:
    found: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list)) and id(item) not in found:
            found.add(id(item))
            stack.extend(item.values() if isinstance(item, dict) else item)
    return found


def check_tracked(node: Any, parent: Any, key: Any) -> None:
    """Every container of a stored value is tracked and knows its parent and key."""
    stack = [(node, parent, key)]
    while stack:
        item, up, at = stack.pop()
        if isinstance(item, (dict, list)):
            assert type(item) in (TrackedDict, TrackedList)
            assert item._parent is up and item._key == at
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((child, item, k) for k, child in pairs)


def store_value(value: Any) -> tuple[Any, ...]:
    """What storing `value` gives: the tree and the journal's effect, or the refusal."""
    store = Store()
    store.begin()
    try:
        store.root["v"] = value
    except Exception as exc:
        store.rollback()
        return ("refused", type(exc), str(exc))
    effects = store.commit("store")
    stored = store.root["v"]
    check_tracked(stored, store.root, "v")
    assert not containers(stored) & containers(value)
    return ("stored", typed(stored), typed(effects))


def _slow_adoption(patch: pytest.MonkeyPatch) -> None:
    patch.setattr(adopt, "nested_lists", lambda *args: None)
    patch.setattr(adopt, "_flat_dicts", lambda items: False)


def _in_records(depth: int) -> Any:
    return nested(depth, leaf=[{"id": 1, "tags": ["x"]}])


ADOPT_TABLE: dict[str, Any] = {
    "records": records(40),
    "records sharing a list": [{"id": i, "tags": TAGS} for i in range(5)],
    "flat records": [{"id": i, "x": str(i), "f": 1.5} for i in range(30)],
    "records with tuples": [{"id": 1, "t": (1, (2, "x"))}],
    "records with a nan key": [{"id": 1}, {float("nan"): 1}],
    "records with nan values": [{"a": float("nan"), "tags": [float("nan")]}],
    "records with a float key": [{1.5: "x", "b": [1]}],
    "records with a tuple key": [{(1, "a"): "x", "b": [1]}],
    "records holding a file": [{"f": FILE, "tags": [1]}],
    "a file in a record's list": [{"tags": [FILE]}],
    "a set in a record's list": [{"id": 1}, {"tags": [{1}]}],
    "a bytearray in a record": [{"tags": [1], "b": bytearray(b"x")}],
    "lists of lists in records": [{"tags": [[1]]}],
    "tracked records": Store({"u": records(10)}).root["u"],
    "mixed": [{"a": 1}, [1, 2], "x", (1,)],
    **{f"records {depth} deep": _in_records(depth) for depth in range(MAX_DEPTH - 4, MAX_DEPTH)},
}
REFUSED = {
    "records with a nan key",
    "a set in a record's list",
    "a bytearray in a record",
    f"records {MAX_DEPTH - 2} deep",  # its lists sit at MAX_DEPTH + 1
    f"records {MAX_DEPTH - 1} deep",
}


@pytest.mark.parametrize("name", ADOPT_TABLE)
def test_record_copying_and_the_general_adoption_agree(name: str) -> None:
    value = ADOPT_TABLE[name]
    fast = store_value(value)
    assert fast[0] == ("refused" if name in REFUSED else "stored")
    with pytest.MonkeyPatch.context() as patch:
        _slow_adoption(patch)
        assert store_value(value) == fast


@pytest.mark.parametrize("count", [13, 14])
def test_record_copying_counts_containers_as_the_general_adoption_does(count: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(budget, "MAX_ADOPT_NODES", 27)  # 1 + 13 + 13 fit; 1 + 14 + 14 do not
        fast = store_value(records(count))
        _slow_adoption(patch)
        assert store_value(records(count)) == fast
    assert fast[0] == ("stored" if count == 13 else "refused")


def _stored(value: Any) -> Any:
    """`value` as the tree holds it (stored by a mutation: `Store(value)` would consume it)."""
    store = Store()
    store.begin()
    store.root["v"] = value
    store.commit("store")
    return store.root["v"]


FREEZE_TABLE: dict[str, Any] = {
    name: value for name, value in ADOPT_TABLE.items() if name not in REFUSED
}


@pytest.mark.parametrize("name", FREEZE_TABLE)
def test_freezing_records_and_the_general_freeze_agree(name: str) -> None:
    stored = _stored(FREEZE_TABLE[name])
    fast = freeze(stored)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plain_module, "nested_lists", lambda *args: None)
        patch.setattr(plain_module, "_scalar_dicts", lambda items, keys=False: False)
        slow = freeze(stored)
    assert typed(fast) == typed(slow)
    assert not containers(fast) & containers(stored)
    assert not containers(slow) & containers(stored)


@pytest.mark.parametrize("name", [*SIZE_TABLE, *FREEZE_TABLE])
def test_detaching_through_marshal_and_the_general_walk_agree(name: str) -> None:
    value = SIZE_TABLE.get(name, FREEZE_TABLE.get(name))
    outcomes = []
    for fast in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            if not fast:
                patch.setattr(plain_module, "_marshal_copy", lambda value, depth: None)
                patch.setattr(plain_module, "_scalar_dicts", lambda items, keys=False: False)
            try:
                copy = plain_module.to_plain(value)
            except (TypeError, LimitExceeded) as exc:
                outcomes.append((type(exc), str(exc)))
                continue
            assert not containers(copy) & containers(value)
            outcomes.append(typed(copy))
    assert outcomes[0] == outcomes[1]
