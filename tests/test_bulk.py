"""The C-speed paths for collections of records (pyzdb.bulk and its callers).

Each fast path must give what the slow one gave: the wire-size bound is never under msgpack's
real size and hands anything exotic to the exact walk; records stored, frozen, read back,
journaled and recovered keep every type; the tree never shares a container with a result or
with the value it was stored from; every budget of the slow path still refuses.
"""

from __future__ import annotations

import pytest

import pyzdb
from pyzdb.bulk import nested_lists, wire_bound
from pyzdb.errors import LimitExceeded
from pyzdb.net import protocol
from pyzdb.storage import adopt, budget
from pyzdb.storage.store import Store
from pyzdb.storage.tracked import TrackedDict, TrackedList
from pyzdb.values import RESULT_DEPTH, SCALAR_TYPES, File, freeze, measure

PLAIN = SCALAR_TYPES | {list, dict, tuple, set, frozenset}
BOUND_ARGS = {
    "scalars": SCALAR_TYPES,
    "dicts": frozenset({dict, TrackedDict}),
    "sequences": frozenset({list, TrackedList, tuple, set, frozenset}),
    "plain_types": PLAIN,
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
    wire = len(protocol.encode_value(value))
    bound, plain, native = wire_bound(value, 10**9, RESULT_DEPTH, **BOUND_ARGS)
    assert wire <= bound
    assert plain
    assert measure(value, 10**9).size >= wire
    assert native == (
        "tuple" not in repr(value) and "frozenset" not in repr(value) and "set()" not in repr(value)
    )
    assert protocol.encode_wire(value, native) == protocol.encode_value(value)


def test_native_encoding_of_the_tree_gives_the_strict_encoders_bytes():
    """The store's subclasses, big ints and lone surrogates: same bytes, or the strict path."""

    def value() -> dict:
        return {"users": records(20), "big": [2**70, -(2**64)], "odd": "\ud800", 3: None}

    store = Store(value())  # (a store consumes the value it is built from)
    found = measure(store.root, 10**9)
    assert found.native and not found.plain
    assert protocol.encode_wire(store.root, True) == protocol.encode_value(value())
    assert protocol.decode_value(protocol.encode_wire(store.root, True), 10**9) == value()


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
        db.query("'%s%s' % ('x' * 6_000_000, 'y' * 6_000_000)")  # noqa: UP031
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
