"""The wire: the value codec type for type (`pyzdb.codec`), messages and their versions
(`pyzdb.net.messages`), hostile bytes, errors both ways (`pyzdb.net.errorinfo`)."""

from __future__ import annotations

import enum
import gc
import keyword
import random
import struct
import threading
import time

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyzdb import codec
from pyzdb.codec import MAX_COLLISIONS, MAX_WIRE_DEPTH, Encoded, decode_value, encode_value
from pyzdb.errors import ConnectionError, Error, LimitExceeded, ProtocolError, SecurityError
from pyzdb.net import errorinfo, messages, versions
from pyzdb.net.errorinfo import ErrorInfo, error_to_info, info_to_exception
from pyzdb.net.messages import (
    REQUEST_FIELDS,
    Reply,
    Request,
    decode_reply,
    decode_request,
    pack,
    request_id_of,
    unpack,
)
from pyzdb.net.versions import PROTOCOL_VERSION, REPLY_VERSION, older_server_refusal
from pyzdb.values import File

LIMIT = 1 << 30
HASH_MODULUS = 2**61 - 1  # hash(n) == n % HASH_MODULUS for ints >= 0


def round_trip(value: object) -> object:
    return decode_value(encode_value(value), LIMIT)


def assert_same(left: object, right: object) -> None:
    """Equal and of the same type all the way down: floats bit for bit, dicts in order, and a
    File's pending data too."""
    stack = [(left, right)]
    while stack:
        a, b = stack.pop()
        assert type(a) is type(b), f"{a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})"
        if type(a) is float:
            assert struct.pack("<d", a) == struct.pack("<d", b)
        elif type(a) in (list, tuple):
            assert len(a) == len(b)
            stack.extend(zip(a, b, strict=True))
        elif type(a) is dict:
            assert list(a) == list(b)
            stack.extend(zip(a, b, strict=True))
            stack.extend(zip(a.values(), b.values(), strict=True))
        elif type(a) in (set, frozenset):
            assert a == b
            members = {member: member for member in b}
            stack.extend((member, members[member]) for member in a)
        elif type(a) is File:
            assert (a.digest, a.name, a.size, a.data) == (b.digest, b.name, b.size, b.data)
        else:
            assert a == b


def stored_file(name: str = "f.bin") -> File:
    return File(digest="ab" * 32, name=name, size=3)


def raises_protocol_error(decode, data, match: str | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError, match=match) as info:
        decode(data, LIMIT)
    return info.value


# ---------------------------------------------------------------------------------------------
# The value codec, type for type

EVERY_TYPE = {
    "none": None,
    "true": True,
    "false": False,
    "zero": 0,
    "int64 min": -(2**63),
    "uint64 max": 2**64 - 1,
    "float": 1.5,
    "negative zero": -0.0,
    "inf": float("inf"),
    "nan": float("nan"),
    "str": "plain",
    "unicode": "ünïcødé ✓ 日本語 🐍",
    "lone surrogate": "a\ud800b",
    "empty str": "",
    "bytes": bytes(range(256)),
    "empty bytes": b"",
    "empty list": [],
    "empty dict": {},
    "empty tuple": (),
    "empty set": set(),
    "empty frozenset": frozenset(),
    "list": [1, "a", None, [2.5, b"x"]],
    "tuple": (1, "a", (2, (3,)), [4]),
    "set": {1, "a", (2, 3), b"b"},
    "frozenset": frozenset({1, (2, 3), frozenset({4})}),
    "stored file": stored_file(),
    "pending file": File(data=b"payload", name="p.txt"),
    "nested": {"users": [{"name": "ann", "tags": ("a", "b"), "ids": {1, 2}}]},
    "int keys": {1: "a", -5: "b", 2**70: "big", False: "bool", None: "none", 2.5: "float"},
    "bytes keys": {b"k": 1, "k": 2},
    "tuple keys": {(1, (2, ("a", b"b"))): "deep", (): "empty", (None, 1.5, True): "mixed"},
    "key order": {"z": 1, "a": 2, "m": 3},
}


@pytest.mark.parametrize("value", EVERY_TYPE.values(), ids=EVERY_TYPE.keys())
def test_every_type_round_trips_type_for_type(value):
    assert_same(value, round_trip(value))


@pytest.mark.parametrize("value", [2**63, 2**64, -(2**63) - 1, 10**100, -(10**100), 2**64 * 7])
def test_ints_beyond_64_bits_round_trip_both_signs(value):
    assert_same(value, round_trip(value))
    assert_same({value: (value,)}, round_trip({value: (value,)}))


def test_ints_within_64_bits_stay_plain_msgpack():
    for value in (0, -1, 2**63 - 1, -(2**63), 2**64 - 1):
        assert encode_value(value) == msgpack.packb(value)


def test_dict_and_list_subclasses_encode_as_plain():
    class TrackedDict(dict):
        __slots__ = ("_parent",)

    class TrackedList(list):
        __slots__ = ("_parent",)

    tree = TrackedDict(a=TrackedList([1, TrackedDict(b=TrackedList())]), c=(TrackedList([2]),))
    plain = {"a": [1, {"b": []}], "c": ([2],)}
    assert encode_value(tree) == encode_value(plain)
    assert_same(plain, round_trip(tree))


class Color(enum.IntEnum):
    RED = 1


def _generator():
    yield 1


@pytest.mark.parametrize(
    "value, name",
    [
        (lambda: 0, "function"),
        (_generator(), "generator"),
        (range(3), "range"),
        (object(), "object"),
        (1j, "complex"),
        (Color.RED, "Color"),
        (type("Text", (str,), {})("x"), "Text"),
        ([1, {"deep": print}], "builtin_function_or_method"),
    ],
)
def test_values_that_are_not_data_are_refused_naming_their_type(value, name):
    with pytest.raises(TypeError, match=name):
        encode_value(value)


def test_a_failed_encode_leaves_the_encoder_clean():
    with pytest.raises(TypeError):
        encode_value([1, 2, object()])
    assert encode_value([3]) == msgpack.packb([3])


def test_nesting_beyond_the_limit_is_refused_when_encoding():
    value: list = []
    for _ in range(MAX_WIRE_DEPTH + 10):
        value = [value]
    with pytest.raises(ValueError):
        encode_value(value)


KEYS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=6,
)
FILES = st.builds(File.from_bytes, st.binary(max_size=16), st.text(max_size=8)) | st.builds(
    lambda digest, name, size: File(digest=digest, name=name, size=size),
    st.text("0123456789abcdef", min_size=64, max_size=64),
    st.text(max_size=8),
    st.integers(0, 2**40),
)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary() | FILES,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(KEYS, inner, max_size=5)
        | st.sets(KEYS | FILES, max_size=4)
        | st.frozensets(KEYS, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_any_data_model_value_round_trips_type_for_type(value):
    assert_same(value, round_trip(value))


# ---------------------------------------------------------------------------------------------
# Messages


def rich_request() -> Request:
    return Request(
        id=7,
        op="execute",
        source="db['a'][k] = v",
        root="root",
        params={"k": (1, "x"), "v": [{2**80: {1, 2}}, File.from_bytes(b"abc", "a.txt")]},
        syntax="exec",
        session=b"\x00" * 16,
        min_seq=12,
    )


def test_a_request_round_trips():
    request = rich_request()
    decoded = decode_request(pack(request), LIMIT)
    assert decoded == request
    assert_same(request.params, decoded.params)


def test_request_defaults():
    request = decode_request(pack(Request(1, "ping")), LIMIT)
    assert (
        request.source,
        request.root,
        request.params,
        request.syntax,
        request.session,
        request.min_seq,
        request.wait,
        request.txn,
    ) == ("", "db", {}, "eval", b"", 0, None, False)


def test_wait_and_txn_are_fields_of_the_request():
    request = Request(1, "lock", wait=2.5, txn=True)
    assert request.to_wire()[-2:] == [2.5, True]
    assert decode_request(pack(request), LIMIT) == request
    assert decode_request(pack(Request(1, "query", wait=3)), LIMIT).wait == 3


def test_the_layout_is_the_declaration_of_the_request():
    """One declaration: the dataclass's fields are the wire's items, in order, and the module
    docstring shows the same layout."""
    assert REQUEST_FIELDS == (
        "id",
        "op",
        "source",
        "root",
        "params",
        "syntax",
        "session",
        "min_seq",
        "wait",
        "txn",
    )
    request = rich_request()
    assert request.to_wire() == [2, 0, *(getattr(request, name) for name in REQUEST_FIELDS)]
    assert f"request  [2, 0, {', '.join(REQUEST_FIELDS)}]" in messages.__doc__
    assert pack(request)[:3] == bytes((0x90 + 2 + len(REQUEST_FIELDS), 2, 0))


def test_replies_round_trip_with_a_value_or_an_error():
    ok = Reply(3, True, {"rows": [(1, "a")]}, seq=99)
    assert decode_reply(pack(ok), LIMIT) == ok
    failed = Reply(4, False, error=ErrorInfo("KeyError", ("k",), "'k'", "note", 1, 2, ""))
    assert decode_reply(pack(failed), LIMIT) == failed
    assert unpack(pack(failed), LIMIT) == failed


def test_an_encoded_value_is_spliced_into_a_reply_as_is():
    value = [{"a": (1, 2)}, 2**70, "x" * 100]
    spliced = pack(Reply(5, True, Encoded(encode_value(value)), seq=1))
    assert spliced == pack(Reply(5, True, value, seq=1))
    assert_same(value, decode_reply(spliced, LIMIT).value)


def wire_request(**changes) -> list:
    fields = dict(
        zip(("version", "kind", *REQUEST_FIELDS), Request(1, "query", "db").to_wire(), strict=True)
    )
    fields.update(changes)
    return list(fields.values())


#: A request as a client of protocol 1 sent it: lock control hid in a query parameter.
VERSION_1_REQUEST = [1, 0, 5, "query", "1", "db", {"pyzdb_control": {"wait": 8.0}}, "eval", b"", 0]


def test_a_request_of_another_version_is_refused_naming_both_and_whom_to_upgrade():
    for decode in (decode_request, unpack):
        error = raises_protocol_error(decode, encode_value(VERSION_1_REQUEST))
        assert str(error) == "client speaks protocol 1, this server speaks 2: upgrade pyzdb"
        future = encode_value(wire_request(version=3))
        error = raises_protocol_error(decode, future)
        assert str(error) == (
            "client speaks protocol 3, this server speaks 2: upgrade the server's pyzdb"
        )
    assert request_id_of(encode_value(VERSION_1_REQUEST)) == 5, "refused under its own id"


def test_replies_keep_the_version_1_layout_that_every_client_reads():
    frame = pack(Reply(9, False, error=error_to_info(ProtocolError("no"))))
    assert frame[:3] == bytes((0x97, 1, 1))
    assert pack(Reply(9, True, [1], seq=3))[:3] == bytes((0x97, 1, 1))
    assert REPLY_VERSION == 1 and PROTOCOL_VERSION == 2
    newer = encode_value([2, *Reply(9, True).to_wire()[1:]])
    raises_protocol_error(decode_reply, newer, match="replies in protocol 2")


def test_an_older_server_refusing_the_version_is_recognised():
    said = "protocol version 2 is not supported; this peer speaks version 1"
    refused = older_server_refusal(ErrorInfo("ProtocolError", (said,), said))
    assert str(refused) == (
        "client speaks protocol 2, the server speaks 1: upgrade the server's pyzdb"
    )
    for other in (
        ErrorInfo("ProtocolError", (), "request op is one of query, got 'x' (str)"),
        ErrorInfo(
            "ProtocolError", (), "protocol version 3 is not supported; this peer speaks version 1"
        ),
        ErrorInfo("ValueError", (), said),
    ):
        assert older_server_refusal(other) is None


def test_the_version_is_read_before_anything_else_is_decoded():
    future = b"\x93\x07" + b"\xc1\xc1"  # version 7, then bytes no msgpack can parse
    raises_protocol_error(decode_request, future, match="version 7 is not supported")
    old = b"\x93\x01\x00" + b"\xc1"  # a version-1 request head, then bytes that do not parse
    raises_protocol_error(decode_request, old, match="client speaks protocol 1")


@pytest.mark.parametrize(
    "frame",
    [
        msgpack.packb({"version": 1}),
        msgpack.packb("hello"),
        msgpack.packb([]),
        msgpack.packb(["1", 0]),
        msgpack.packb([-1, 0]),
        msgpack.packb([True, 0]),
    ],
    ids=["map", "str", "empty array", "str version", "negative version", "bool version"],
)
def test_a_frame_that_is_not_an_array_opened_by_a_version_is_refused(frame):
    raises_protocol_error(decode_request, frame, match="not a pyzdb message")


@pytest.mark.parametrize("kind", [2, -1, True, "0", None])
def test_an_unknown_message_kind_is_refused(kind):
    raises_protocol_error(unpack, encode_value(wire_request(kind=kind)), match="kind")


def test_a_reply_is_not_a_request_and_a_request_is_not_a_reply():
    raises_protocol_error(decode_request, pack(Reply(1, True)), match="expected a request")
    raises_protocol_error(decode_reply, pack(Request(1, "ping")), match="expected a reply")


def test_a_message_with_the_wrong_number_of_items_is_refused():
    raises_protocol_error(decode_request, encode_value(wire_request()[:-1]), match="12 items")
    raises_protocol_error(decode_request, encode_value(wire_request() + [0]), match="12 items")
    raises_protocol_error(
        decode_reply, encode_value(Reply(1, True).to_wire()[:-1]), match="7 items"
    )


@pytest.mark.parametrize(
    "field, value",
    [
        ("id", 0),
        ("id", -1),
        ("id", 2**63),
        ("id", True),
        ("id", 1.0),
        ("id", "1"),
        ("op", "drop"),
        ("op", "QUERY"),
        ("op", b"query"),
        ("op", None),
        ("source", b"db"),
        ("source", None),
        ("source", ["db"]),
        ("root", ""),
        ("root", "1db"),
        ("root", "for"),
        ("root", "__builtins__"),
        ("root", 5),
        ("params", []),
        ("params", {1: 2}),
        ("params", {"_x": 1}),
        ("params", {"a b": 1}),
        ("params", {"__builtins__": {}}),
        ("syntax", "single"),
        ("syntax", None),
        ("session", "abc"),
        ("session", b"x" * 65),
        ("session", None),
        ("min_seq", -1),
        ("min_seq", False),
        ("min_seq", None),
        ("wait", -0.5),
        ("wait", 86401),
        ("wait", float("nan")),
        ("wait", float("inf")),
        ("wait", True),
        ("wait", "1"),
        ("txn", None),
        ("txn", 1),
    ],
)
def test_request_fields_of_the_wrong_type_or_value_are_refused(field, value):
    error = raises_protocol_error(decode_request, encode_value(wire_request(**{field: value})))
    assert field in str(error).replace("param name", "params")
    with pytest.raises(ProtocolError):  # the same rules hold where a request is built
        Request(**{"id": 1, "op": "query", field: value})


@pytest.mark.parametrize(
    "wire",
    [
        [1, 1, -1, True, None, 0, None],
        [1, 1, 1, 1, None, 0, None],
        [1, 1, 1, True, None, -3, None],
        [1, 1, 1, True, None, 0, ["KeyError", (), "m", "", None, None, ""]],
        [1, 1, 1, False, None, 0, None],
        [1, 1, 1, False, "value", 0, ["KeyError", (), "m", "", None, None, ""]],
        [1, 1, 1, False, None, 0, ["KeyError", (), "m"]],
        [1, 1, 1, False, None, 0, "KeyError"],
        [1, 1, 1, False, None, 0, ["", (), "m", "", None, None, ""]],
        [1, 1, 1, False, None, 0, ["KeyError", ["k"], "m", "", None, None, ""]],
        [1, 1, 1, False, None, 0, ["KeyError", (), b"m", "", None, None, ""]],
        [1, 1, 1, False, None, 0, ["KeyError", (), "m", "", "3", None, ""]],
        [1, 1, 1, False, None, 0, ["KeyError", (), "m", "", None, 2.0, ""]],
        [1, 1, 1, False, None, 0, ["KeyError", (), "m", "", None, None, 0]],
    ],
    ids=lambda wire: repr(wire[2:]),
)
def test_reply_fields_of_the_wrong_type_or_value_are_refused(wire):
    raises_protocol_error(decode_reply, encode_value(wire))


def test_request_id_of_reads_the_id_of_a_request_that_fails_to_decode():
    for message_id in (1, 127, 128, 70_000, 2**40, 2**63 - 1):
        frame = pack(Request(message_id, "query", "db"))
        assert request_id_of(frame) == message_id
        assert request_id_of(frame[:-1]) == message_id  # truncated after the id
    broken = encode_value(wire_request(id=9, op="drop"))
    raises_protocol_error(decode_request, broken)
    assert request_id_of(broken) == 9


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x9c",
        b"\x9c\x02\x00",
        "text",
        None,
        pack(Reply(5, True)),
        encode_value(wire_request(version=0, id=5)),
        encode_value(wire_request(version=200, id=5)),
        encode_value(wire_request(id=2**64 - 1)),
        encode_value(wire_request(id=-5)),
        encode_value(wire_request(id="5")),
    ],
)
def test_request_id_of_answers_0_when_the_id_is_unreadable(data):
    assert request_id_of(data) == 0


# ---------------------------------------------------------------------------------------------
# Hostile bytes


def test_oversized_input_is_refused_before_decoding():
    garbage = b"\xc1" * 101  # would be refused as invalid msgpack, had it been parsed
    for decode in (decode_value, decode_request, decode_reply):
        with pytest.raises(ProtocolError, match="101 bytes exceeds the limit of 100"):
            decode(garbage, 100)
    frame = pack(rich_request())
    assert decode_request(frame, len(frame)) == rich_request()
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_request(frame, len(frame) - 1)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "empty"),
        (b"\xdd\xff\xff\xff\xff\x00", "array"),  # an array header claiming 2**32-1 items
        (b"\xdf\xff\xff\xff\xff\x00\x00", "map"),
        (b"\xc6\xff\xff\xff\xff\x00", "incomplete"),  # bytes and str are never preallocated
        (b"\xdb\xff\xff\xff\xff\x00", "incomplete"),
        (b"\x92\x01", "incomplete"),
        (b"\x01\x02", "1 bytes follow"),
        (b"\xc1", "0xc1"),
        (b"\xa2\xff\xfe", "utf-8"),
        (b"\xd4\x09\x00", "exceeds max_ext_len"),  # any extension with a payload
        (msgpack.packb(msgpack.ExtType(1, b"x")), "exceeds max_ext_len"),
        (msgpack.packb(msgpack.Timestamp(1, 0)), "exceeds max_ext_len"),
        (msgpack.packb(msgpack.ExtType(99, b"")), "unknown extension type 99"),
        (msgpack.packb(msgpack.ExtType(1, b"")), "first in an array"),
        (msgpack.packb([1, msgpack.ExtType(1, b"")]), "first in an array"),
        (msgpack.packb([msgpack.ExtType(1, b""), msgpack.ExtType(1, b"")]), "first in an array"),
        (msgpack.packb({"k": msgpack.ExtType(2, b"")}), "first in an array"),
        (msgpack.packb([msgpack.ExtType(4, b""), b"\x01"]), "within 64 bits"),
        (msgpack.packb([msgpack.ExtType(4, b"")]), "big int"),
        (msgpack.packb([msgpack.ExtType(4, b""), b""]), "big int"),
        (msgpack.packb([msgpack.ExtType(4, b""), 2**64 - 1]), "big int"),
        (msgpack.packb([msgpack.ExtType(5, b""), "ab" * 32, "n"]), "File"),
        (msgpack.packb([msgpack.ExtType(5, b""), "../../etc/passwd", "n", 1]), "digest"),
        (msgpack.packb([msgpack.ExtType(5, b""), "ab" * 32, "n", True]), "size"),
        (msgpack.packb([msgpack.ExtType(5, b""), "ab" * 32, "n", 3, b"abc"]), "digest"),
        (msgpack.packb([msgpack.ExtType(2, b""), [1]]), "unhashable"),
        (b"\x81\x91\x00\x00", "unhashable"),  # {[0]: 0}
        (b"\x81\x80\x00", "unhashable"),  # {{}: 0}
    ],
)
def test_malformed_values_are_refused_with_a_clear_message(data, match):
    raises_protocol_error(decode_value, data, match=match)


def test_input_that_is_not_bytes_is_refused():
    released = memoryview(b"\x91\x00")
    released.release()
    strided = memoryview(b"\x92\x01\x02\x03")[::2]
    for data in ("\x91\x00", None, 5, [0x91, 0], released, strided):
        for decode in (decode_value, decode_request, decode_reply):
            raises_protocol_error(decode, data, match="bytes")
        assert request_id_of(data) == 0
    assert decode_value(bytearray(b"\x91\x00"), LIMIT) == [0]
    assert decode_value(memoryview(b"\x91\x00"), LIMIT) == [0]


@pytest.mark.parametrize(
    "key",
    [
        frozenset({1}),
        stored_file(),
        (1, frozenset({2})),
        (1, (2, stored_file())),
    ],
    ids=["frozenset", "File", "tuple holding a frozenset", "tuple holding a File"],
)
def test_map_keys_outside_the_data_model_are_refused(key):
    raises_protocol_error(decode_value, encode_value({key: 1}), match="map key may not")


def test_hash_flooding_map_keys_are_refused_quickly():
    flood = {k * HASH_MODULUS: None for k in range(1, 3001)}  # all hash to 0
    data = encode_value(flood)
    started = time.perf_counter()
    raises_protocol_error(decode_value, data, match="hash flooding")
    assert time.perf_counter() - started < 1.0
    colliding_tuples = {(k * HASH_MODULUS,): None for k in range(1, 3001)}
    raises_protocol_error(decode_value, encode_value(colliding_tuples), match="hash flooding")
    raises_protocol_error(decode_value, encode_value(set(flood)), match="hash flooding")


def test_a_few_colliding_keys_and_many_distinct_ones_are_fine():
    few = {k * HASH_MODULUS: None for k in range(1, MAX_COLLISIONS)}
    few.update({-1: "a", -2: "b"})  # hash(-1) == hash(-2)
    assert_same(few, round_trip(few))
    many = {(k, str(k)): k for k in range(5000)}  # beyond the fast pass: decoded checked
    assert_same(many, round_trip(many))
    files = {"files": [stored_file(str(k)) for k in range(10)], "k": {(1, 2): 3}}
    assert_same(files, round_trip(files))


@pytest.mark.parametrize(
    "bomb",
    [
        b"\x91" * 100_000 + b"\x00",  # [[[[...0...]]]]
        b"\x81\x00" * 100_000 + b"\x00",  # {0: {0: {...}}}
        b"\x92\xc7\x00\x01" * 100_000 + b"\x00",  # ((((...0...),),),)
        b"\x92\xc7\x00\x02" * 100_000 + b"\x00",  # sets of sets: refused before any is hashed
    ],
    ids=["arrays", "maps", "tuples", "sets"],
)
def test_depth_bombs_are_refused(bomb):
    raises_protocol_error(decode_value, bomb, match=f"deeper than {MAX_WIRE_DEPTH}")
    request_bomb = b"\x9c\x02\x00\x01\xa5query\xa2db\xa2db" + bomb
    raises_protocol_error(decode_request, request_bomb, match=f"deeper than {MAX_WIRE_DEPTH}")


def test_nesting_up_to_the_limit_decodes():
    assert decode_value(b"\x91" * MAX_WIRE_DEPTH + b"\x00", LIMIT) is not None


def fuzz_corpus() -> list[bytes]:
    value = {
        "t": (1, (2, "x")),
        "s": {1, (2,)},
        "fs": frozenset({3}),
        "big": [2**70, -(2**70)],
        "f": stored_file(),
        "pf": File.from_bytes(b"data", "d"),
        (1, 2): [None, 1.5, b"b"],
    }
    return [
        pack(rich_request()),
        pack(Request(2, "query", "len(db)", params={"v": value})),
        pack(Reply(3, True, value, seq=5)),
        pack(Reply(4, False, error=error_to_info(LimitExceeded("too slow", "time")))),
        encode_value(value),
        encode_value([value, [value], {"x": value}]),
    ]


def mutations(corpus: list[bytes], rng: random.Random, count: int):
    special = [
        0x00,
        0x7F,
        0x80,
        0x90,
        0x91,
        0x9F,
        0xC0,
        0xC1,
        0xC7,
        0xC8,
        0xC9,
        0xCC,
        0xCF,
        0xD4,
        0xD9,
        0xDB,
        0xDC,
        0xDD,
        0xDE,
        0xDF,
        0xFF,
    ]
    for _ in range(count):
        choice = rng.random()
        if choice < 0.15:
            yield rng.randbytes(rng.randrange(0, 40))
            continue
        data = bytearray(rng.choice(corpus))
        for _ in range(rng.randrange(1, 4)):
            where = rng.randrange(len(data) + 1)
            operation = rng.randrange(5)
            if operation == 0 and data:
                data[min(where, len(data) - 1)] = rng.randrange(256)
            elif operation == 1 and data:
                data[min(where, len(data) - 1)] = rng.choice(special)
            elif operation == 2:
                data[where:where] = rng.randbytes(rng.randrange(1, 6))
            elif operation == 3:
                del data[where : where + rng.randrange(1, 8)]
            else:
                other = rng.choice(corpus)
                start = rng.randrange(len(other))
                data[where:where] = other[start : start + rng.randrange(1, 20)]
        yield bytes(data)


def test_random_and_mutated_bytes_decode_to_a_message_or_a_protocol_error():
    rng = random.Random(20240601)
    corpus = fuzz_corpus()
    started = time.perf_counter()
    slowest = 0.0
    outcomes = {"ok": 0, "refused": 0}
    for data in mutations(corpus, rng, 10_000):
        for decode in (decode_request, decode_reply, decode_value):
            begun = time.perf_counter()
            try:
                decode(data, 1 << 20)
            except ProtocolError:
                outcomes["refused"] += 1
            else:
                outcomes["ok"] += 1
            slowest = max(slowest, time.perf_counter() - begun)
    assert outcomes["ok"] and outcomes["refused"]
    assert slowest < 0.5, f"one input took {slowest:.2f} s"
    assert time.perf_counter() - started < 15


def general_path(data: bytes, kind: type) -> Request | Reply:
    """What `decode_request`/`decode_reply` did before their fast path: `unpack` and a type
    check. Their fast path must be indistinguishable from it."""
    message = unpack(data, LIMIT)
    if type(message) is not kind:
        raise ProtocolError(f"expected a {kind.__name__.lower()}")
    return message


def outcome(decode, *args: object) -> str:
    try:
        return repr(decode(*args))
    except ProtocolError as exc:
        return f"ProtocolError: {exc}"


def small_frames() -> list[bytes]:
    """Small requests and replies, valid and not: what the fast path sees most."""
    return [
        pack(
            Request(1, "query", "db[k0]", params={"k0": "x"}, session=b"s" * 16, wait=4.0, txn=True)
        ),
        pack(Request(2**40, "execute", "db['c'] += 1", syntax="exec", min_seq=7)),
        pack(Request(3, "query", "v", params={"v": (1, 2)})),  # a marker: the general path
        pack(Reply(1, True, 1, seq=5)),
        pack(Reply(2, True, {"a": [1, 2.5, None, b"x"]}, seq=0)),
        pack(Reply(3, True, (1, 2))),
        pack(Reply(4, False, error=error_to_info(KeyError("k")))),
        encode_value(wire_request(params={"_x": 1})),
        encode_value(wire_request(id=True)),
        encode_value(wire_request(root="for")),
        encode_value([1, 1, 1, 1, None, 0, None]),
        encode_value([1, 1, 1, True, None, -3, None]),
        b"\x9c\x02\x00\x01\xa5query\xa2db\xa2db" + b"\x91" * 1100 + b"\x00",  # too deep
        b"\x9c\x02\x00\x01\xa5query\xdb\xff\xff\xff\xff",  # a str longer than the frame
        pack(Request(1, "ping")) + b"\x00",  # trailing bytes
        b"\x97\x01\x01\x01\xc3\xc7\x01\x09\x00\x00",  # an extension with a payload
    ]


def test_the_fast_path_of_small_frames_decodes_exactly_as_the_general_path():
    rng = random.Random(7)
    frames = small_frames()
    for data in frames + list(mutations(frames, rng, 5000)):
        assert_fast_and_general_paths_agree(data)


def assert_fast_and_general_paths_agree(data: bytes) -> None:
    wrong_kind = {
        Request: ("expected a request", "expected a request, got a reply"),
        Reply: ("expected a reply", "expected a reply, got a request"),
    }
    for decode, kind in ((decode_request, Request), (decode_reply, Reply)):
        expected = outcome(general_path, data, kind).replace(*wrong_kind[kind])
        assert outcome(decode, data, LIMIT) == expected, data


NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda name: not keyword.iskeyword(name)
)
ANY_FIELD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=70),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.integers().map(lambda n: (n,)),
)
REQUESTS = st.builds(
    Request,
    id=st.integers(min_value=1, max_value=2**63 - 1),
    op=st.sampled_from(sorted(messages.OPS)),
    source=st.text(max_size=20),
    root=NAMES,
    params=st.dictionaries(NAMES, VALUES, max_size=3),
    syntax=st.sampled_from(messages.SYNTAXES),
    session=st.binary(max_size=64),
    min_seq=st.integers(min_value=0, max_value=2**63 - 1),
    wait=st.none() | st.floats(min_value=0, max_value=86400) | st.integers(0, 86400),
    txn=st.booleans(),
)
REPLIES = st.builds(
    Reply,
    id=st.integers(min_value=0, max_value=2**63 - 1),
    ok=st.just(True),
    value=VALUES,
    seq=st.integers(min_value=0, max_value=2**63 - 1),
) | st.builds(
    lambda request_id, exc: Reply(request_id, False, error=error_to_info(exc)),
    st.integers(min_value=0, max_value=2**63 - 1),
    st.sampled_from([KeyError("k"), LimitExceeded("slow", "time"), ProtocolError("bad")]),
)


@st.composite
def message_frames(draw) -> bytes:
    """A valid request or reply, or one with fields replaced, cut or added: the frames a fast
    path sees, well formed or not."""
    wire = draw(REQUESTS | REPLIES).to_wire()
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        change = draw(st.sampled_from(["replace", "cut", "add"]))
        if change == "replace":
            wire[draw(st.integers(min_value=0, max_value=len(wire) - 1))] = draw(ANY_FIELD)
        elif change == "cut" and wire:
            wire.pop()
        else:
            wire.append(draw(ANY_FIELD))
    return encode_value(wire)


@settings(max_examples=1500, deadline=None)
@given(message_frames())
def test_for_generated_messages_the_fast_path_and_the_general_path_agree(data):
    """The fast decoders of `decode_request` and `decode_reply` restate the general path
    (`unpack`): for any message, valid or broken, both give the same message or the same
    error."""
    assert_fast_and_general_paths_agree(data)


def test_the_fast_path_keeps_every_bound():
    deep = b"\x9c\x02\x00\x01\xa5query\xa2db\xa2db" + b"\x91" * 1100 + b"\x00"
    raises_protocol_error(decode_request, deep, match=f"deeper than {MAX_WIRE_DEPTH}")
    with pytest.raises(ProtocolError, match="exceeds the limit of 5 bytes"):
        decode_request(pack(Request(1, "ping")), 5)
    lying = b"\x9c\x02\x00\x01\xa5query\xdd\xff\xff\xff\xff"  # 4 G items, in 11 bytes
    raises_protocol_error(decode_request, lying)


def test_a_value_reply_is_packed_without_a_reply_object_byte_for_byte():
    for request_id, value, seq in [(0, None, 0), (1, [1, (2, 3)], 9), (2**63 - 1, "x", 2**40)]:
        encoded = Encoded(encode_value(value))
        assert messages.pack_value_reply(request_id, encoded, seq) == pack(
            Reply(request_id, True, value, seq)
        )
    for bad in [
        (-1, Encoded(b"\xc0"), 0),
        (True, Encoded(b"\xc0"), 0),
        (1, Encoded(b"\xc0"), -1),
        (1, b"\xc0", 0),
    ]:
        with pytest.raises(ProtocolError):
            messages.pack_value_reply(*bad)


def test_the_cache_of_checked_names_is_bounded_and_checks_types():
    for index in range(messages._GOOD_NAMES_MAX + 100):
        Request(1, "query", params={f"n{index}": 1})
    assert len(messages._GOOD_NAMES) <= messages._GOOD_NAMES_MAX

    class Name(str):
        pass

    with pytest.raises(ProtocolError):
        Request(1, "query", params={Name("n1"): 1})  # an accepted name, but not a str
    with pytest.raises(ProtocolError):
        Request(1, "query", root=Name("db"))


def test_every_truncation_of_a_valid_message_is_refused():
    for frame in fuzz_corpus():
        for end in range(len(frame)):
            for decode in (decode_request, decode_reply, decode_value):
                with pytest.raises(ProtocolError):
                    decode(frame[:end], LIMIT)


# ---------------------------------------------------------------------------------------------
# Decoding big frames


def test_the_gc_is_restored_after_big_decodes():
    data = encode_value([{"i": i} for i in range(50_000)])
    assert gc.isenabled()
    decode_value(data, LIMIT)
    assert gc.isenabled()
    gc.disable()
    try:
        decode_value(data, LIMIT)
        assert not gc.isenabled()  # the application's choice stands
    finally:
        gc.enable()
    with pytest.raises(ProtocolError):
        decode_value(data[:-1], LIMIT)
    assert gc.isenabled()


def test_threads_encode_and_decode_concurrently():
    value = {"rows": [(i, {"v": [i, str(i)]}) for i in range(3_000)], "big": 2**90}
    expected = encode_value(value)
    failures: list[str] = []

    def work() -> None:
        for _ in range(10):
            if encode_value(value) != expected:
                failures.append("encode")
            if decode_value(expected, LIMIT) != value:
                failures.append("decode")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert gc.isenabled()


# ---------------------------------------------------------------------------------------------
# Errors across the wire


def over_the_wire(exc: BaseException) -> BaseException:
    """What a client raises for `exc` raised on the server, through a real frame."""
    frame = pack(Reply(1, False, error=error_to_info(exc)))
    return info_to_exception(decode_reply(frame, LIMIT).error)


def test_a_query_exception_keeps_its_type_args_note_and_position():
    exc = KeyError("missing")
    exc.add_note("query line 2, column 5: db['missing']")
    exc.pyzdb_line, exc.pyzdb_column = 2, 5
    raised = over_the_wire(exc)
    assert type(raised) is KeyError
    assert raised.args == ("missing",)
    assert raised.__notes__ == ["query line 2, column 5: db['missing']"]
    assert (raised.pyzdb_line, raised.pyzdb_column) == (2, 5)


@pytest.mark.parametrize(
    "exc",
    [
        IndexError("list index out of range"),
        ZeroDivisionError("division by zero"),
        TypeError("unsupported"),
        ValueError(1, (2, 3)),
        Exception("plain"),
        StopIteration(7),
    ],
)
def test_built_in_query_exceptions_cross_as_themselves(exc):
    raised = over_the_wire(exc)
    assert type(raised) is type(exc) and raised.args == exc.args
    assert raised.pyzdb_line is None


def test_pyzdb_exceptions_keep_their_class_and_budget():
    refused = over_the_wire(SecurityError("import is not allowed"))
    assert type(refused) is SecurityError and str(refused) == "import is not allowed"
    overrun = over_the_wire(LimitExceeded("query ran out of time", "time"))
    assert type(overrun) is LimitExceeded and overrun.budget == "time"
    assert str(overrun) == "query ran out of time"
    assert type(over_the_wire(ConnectionError("gone"))) is ConnectionError


def test_args_that_do_not_fit_the_constructor_fall_back_to_the_message():
    info = ErrorInfo("LimitExceeded", (1, 2, 3), "too big", budget="size")
    raised = info_to_exception(info)
    assert type(raised) is LimitExceeded and str(raised) == "too big"
    assert raised.budget == "size"


@pytest.mark.parametrize(
    "name",
    [
        "SystemExit",
        "KeyboardInterrupt",
        "BaseException",
        "os.system",
        "__import__",
        "GeneratorExit",
        "type",
        "object",
        "builtins.eval",
        "",
    ],
)
def test_unknown_type_names_become_a_plain_error(name):
    if not name:
        with pytest.raises(ProtocolError):
            ErrorInfo(name, (), "bye")
        return
    raised = info_to_exception(ErrorInfo(name, ("rm -rf /",), "bye"))
    assert type(raised) is Error
    assert str(raised) == f"{name}: bye"


def test_server_side_exceptions_outside_the_tables_are_named_not_sent():
    class Odd(Exception):
        pass

    raised = over_the_wire(Odd("strange"))
    assert type(raised) is Error
    assert str(raised) == f"{__name__}.{Odd.__qualname__}: strange"
    assert str(over_the_wire(SystemExit(3))) == "SystemExit: 3"


def test_subclasses_cross_as_their_nearest_known_class():
    decode_error = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    raised = over_the_wire(decode_error)
    assert type(raised) is UnicodeError
    assert str(raised).startswith("UnicodeDecodeError: 'utf-8' codec can't decode")

    class Overdrawn(LimitExceeded):
        pass

    raised = over_the_wire(Overdrawn("no credit", "steps"))
    assert type(raised) is LimitExceeded and raised.budget == "steps"
    assert str(raised) == f"{__name__}.{Overdrawn.__qualname__}: no credit"


def test_args_that_are_not_data_travel_as_their_repr():
    class Key:
        def __repr__(self) -> str:
            return "<Key 7>"

    raised = over_the_wire(KeyError(Key(), "plain"))
    assert raised.args == ("<Key 7>", "plain")


def test_an_unprintable_exception_is_still_reported():
    class Unprintable(ValueError):
        def __str__(self) -> str:
            raise RuntimeError("no")

    info = error_to_info(Unprintable())
    assert info.type == "ValueError" and "unprintable" in info.message


def test_a_syntax_error_carries_its_position():
    try:
        compile("a = (", "<query>", "exec")
    except SyntaxError as exc:
        info = error_to_info(exc)
    assert info.line == 1 and info.column is not None
    assert type(info_to_exception(info)) is Error


def test_protocol_error_messages_do_not_dump_huge_values():
    error = raises_protocol_error(
        decode_request, encode_value(wire_request(op="x" * 10_000)), match="op"
    )
    assert len(str(error)) < 400


def test_module_exports_resolve():
    for module in (codec, codec.wire, codec.decode, messages, versions, errorinfo):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
