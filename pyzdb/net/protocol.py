"""The wire protocol of pyzdb: messages and a safe value codec, with no sockets in it.

Like h11, this module only turns bytes into messages and back; the sync client, the asyncio
client, the server and the replicas each bring their own I/O and share everything here.

Theory of operation
===================

Frames. One ZeroMQ message part carries one msgpack array::

    request  [version, 0, id, op, source, root, params, syntax, session, min_seq]
    reply    [version, 1, id, ok, value, seq, error]
    error    None | [type, args, message, note, line, column, budget]

`Request`, `Reply` and `ErrorInfo` are the frozen dataclasses behind them; `pack(message)` makes
a frame and `decode_request` / `decode_reply` are the only ways back. Request ids start at 1: a
reply with id 0 refuses a frame whose id could not be read (see `request_id_of`).

Values. msgpack writes None, bool, 64-bit int, float, str, bytes, list and dict itself. Every other
type of the data model is an array whose first item is a *marker*, an extension value with an
empty payload::

    tuple               [<ext 1>, item, ...]
    set                 [<ext 2>, item, ...]
    frozenset           [<ext 3>, item, ...]
    int beyond 64 bits  [<ext 4>, bytes: two's complement, big-endian]
    pyzdb.File          [<ext 5>, digest, name, size] or [..., size, pending data]

So a tuple stays a tuple (also as a dict key), and a dict/list subclass such as the store's
TrackedDict is written as a plain dict/list. A str travels as UTF-8 with 'surrogatepass', so
even a str holding a lone surrogate comes back as it was.

Markers, rather than values packed inside extension payloads, keep all parsing in msgpack's C
parser: no recursion in Python, and one depth limit for every type. And since every payload is
empty, `max_ext_len=0` refuses all others, including msgpack's built-in timestamp (code -1),
which it would otherwise decode before any hook could refuse it.

Decoding passes. A frame decodes in the first of three passes that can take it (`_Decoder`):
msgpack alone, at full speed, for frames with no marker (most results: dicts, lists, scalars);
then with a hook per array that builds the marked types; then with a hook per map as well, which
checks keys. A frame is parsed at most three times.

Small messages. `decode_request` and `decode_reply` first try a frame under `_SMALL_FRAME`
whose first three bytes are the message's array header, version and kind: one plain msgpack
pass with the same bounds, then the dataclass's own field checks. That is nearly every request
and reply, in about a third of the time; a marker or any problem sends the frame down the
general path, so what is accepted or refused, and the error message, are the same.

Versioning rules:

1. In every version, a frame is a msgpack array whose first item is the protocol version as a
   positive fixint. A peer reads that byte before it decodes anything else.
2. A frame of a version this peer does not speak is refused with a `ProtocolError` that lists
   the versions it does speak. The server sends that refusal as a version-1 reply, which every
   client can read. A change to any layout is a new version; within a version nothing is
   optional and no field is ignored.

Limits:

- Size: the caller passes `max_size`, and a larger frame is refused before a byte of it is
  parsed. `MAX_REQUEST_SIZE` (16 MiB) is what a server accepts from a client. Precedents: gRPC
  receives 4 MiB by default, a MongoDB document is at most 16 MiB, and MySQL's
  max_allowed_packet is 64 MB. A frame can take ~70x its size in memory once decoded: an empty
  map is 1 byte and an empty dict 64 (3.8 MiB of them took 278 MiB). So one hostile 16 MiB frame
  may cost ~1.2 GB; authenticate clients (CurveZMQ) before raising the limit. `MAX_REPLY_SIZE`
  (512 MiB, Redis's proto-max-bulk-len) is what a client accepts from the server it chose.
  ZeroMQ's MAXMSGSIZE is unlimited by default; the server should set it to its own limit, so
  libzmq drops an oversized frame before Python allocates it.
- Depth: msgpack's parser keeps an explicit stack and stops at `MAX_DEPTH` (1024) levels
  without recursion; its packer has the same bound. The store's own limit (values.MAX_DEPTH,
  200) is tighter, and the store enforces it.
- Lengths: every declared length (string, bytes, array, map) must fit in the frame, so a lying
  header cannot make the parser preallocate.
- Hash flooding: values that hash alike turn each dict insert into a scan, and building the
  map goes quadratic. Tuples, frozensets, big ints and Files have hashes a sender can choose. So
  a frame with a frozenset, a File or more than `_FAST_PASS_HASHABLES` tuples and big ints goes
  on to the checked pass, which refuses any container with more than `MAX_COLLISIONS` colliding
  hashes. str and bytes hashes are randomized per process. Floats and 64-bit ints allow at most
  ~200 distinct values per hash, which bounds their worst case at ~16x the usual decode time
  (measured).

Malformed input. Each case raises `pyzdb.errors.ProtocolError` with a message that names it:
not a bytes-like object; larger than `max_size`; empty or truncated; not an array headed by a
version; an unknown version; invalid msgpack, trailing bytes, nesting deeper than `MAX_DEPTH`, or a
length beyond the frame; invalid UTF-8; an extension with a payload or an unknown code; a marker
anywhere but first in an array; an unhashable or non-data map key; too many colliding hashes; a
wrong message kind or item count; a field of the wrong type or value. Any other exception out of
a decode function is a bug.
"""

from __future__ import annotations

import keyword
import reprlib
import threading
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Final, NoReturn

import msgpack

from pyzdb.errors import PYZDB_EXCEPTIONS, QUERY_EXCEPTIONS, Error, LimitExceeded, ProtocolError
from pyzdb.gcpause import gc_paused
from pyzdb.limits import ROOT_NAME
from pyzdb.values import File

# ---------------------------------------------------------------------------------------------
# Constants

PROTOCOL_VERSION: Final = 1
#: Versions this module decodes; the refusal of any other version lists them.
SUPPORTED_VERSIONS: Final = (PROTOCOL_VERSION,)

#: Default `max_size` of a server decoding requests (see "Limits" above).
MAX_REQUEST_SIZE: Final = 16 * 1024 * 1024
#: Default `max_size` of a client decoding replies (see "Limits" above).
MAX_REPLY_SIZE: Final = 512 * 1024 * 1024
#: Deepest nesting in a frame: the fixed stack of msgpack's C parser and packer, not ours to set.
MAX_DEPTH: Final = 1024
#: Longest `Request.session`: a random id (16 bytes will do), not a place to store data in the
#: server's table of recent requests.
MAX_SESSION_BYTES: Final = 64
#: Map keys or set members per container that may share a hash with another before the frame is
#: refused as hash flooding; distinct values rarely collide (`hash(-1) == hash(-2)`).
MAX_COLLISIONS: Final = 64

#: The operations a request may name, with what each asks of the server (read-only).
OPS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "query": "evaluate one expression, read-only",
        "execute": "run statements atomically; may write",
        "undo": "undo the last committed unit",
        "redo": "redo the last undone unit",
        "checkpoint": "write a checkpoint of the whole tree",
        "history": "list the units undo and redo step through",
        "lock": "take the exclusive, lease-bounded lock",
        "unlock": "release the lock",
        "begin": "open a transaction",
        "commit": "commit the open transaction",
        "rollback": "roll the open transaction back",
        "ping": "answer at once",
        "blob": "move the bytes of a pyzdb.File",
        "info": "describe the server's state in sections (pyzdb.info)",
        "watch": "changes under a path after a seq (the change feed)",
        "replicate": "journal records after a seq, for a replica (acknowledges that seq)",
        "snapshot": "a chunk of the tree as of a seq, for a replica that starts over",
    }
)
#: How the server compiles `Request.source`: one expression, or statements.
SYNTAXES: Final = ("eval", "exec")
_OP_NAMES: Final = frozenset(OPS)

_REQUEST: Final = 0
_REPLY: Final = 1
#: Frames shorter than this whose first bytes are a version-1 request's (or reply's) head take
#: the fast path of `decode_request` (`decode_reply`): see `_decode_small`.
_SMALL_FRAME: Final = 16 * 1024
#: fixarray of 10 items, version 1, kind 0 (request); fixarray of 7, version 1, kind 1 (reply).
_REQUEST_ARRAY_HEAD: Final = bytes((0x9A, PROTOCOL_VERSION, _REQUEST))
_REPLY_ARRAY_HEAD: Final = bytes((0x97, PROTOCOL_VERSION, _REPLY))
_MAX_ID: Final = 2**63 - 1
_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1

# Extension codes of the markers. Codes are never reused: a new type is a new code.
_EXT_TUPLE: Final = 1
_EXT_SET: Final = 2
_EXT_FROZENSET: Final = 3
_EXT_BIGINT: Final = 4
_EXT_FILE: Final = 5

#: Tuples, frozensets, big ints and Files a decode may build before it reruns in the checked
#: pass: with full hash collisions, 1000 keys cost ~10 ms to insert.
_FAST_PASS_HASHABLES: Final = 1000
#: Frames from this size up decode with the cyclic GC paused (see `pyzdb.gcpause`).
_GC_PAUSE_BYTES: Final = 64 * 1024

# ---------------------------------------------------------------------------------------------
# Encoding

_TUPLE_MARK = msgpack.ExtType(_EXT_TUPLE, b"")
_SET_MARK = msgpack.ExtType(_EXT_SET, b"")
_FROZENSET_MARK = msgpack.ExtType(_EXT_FROZENSET, b"")
_BIGINT_MARK = msgpack.ExtType(_EXT_BIGINT, b"")
_FILE_MARK = msgpack.ExtType(_EXT_FILE, b"")


def _type_name(cls: type) -> str:
    """`dict`, `mymodule.Thing`: how messages name a type."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _encode_other(value: Any) -> Any:
    """msgpack's `default` hook: the wire form of every value msgpack does not write itself.

    With `strict_types`, msgpack writes only exact None, bool, int (64-bit), float, str, bytes,
    list and dict; tuples, subclasses, big ints and everything else come here. Checks run in
    order of frequency: tuples and the store's containers first.
    """
    kind = type(value)
    if kind is tuple:
        return [_TUPLE_MARK, *value]
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    if kind is int:
        return [_BIGINT_MARK, value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)]
    if kind is set:
        return [_SET_MARK, *value]
    if kind is frozenset:
        return [_FROZENSET_MARK, *value]
    if kind is File:
        wire = [_FILE_MARK, value.digest, value.name, value.size]
        if value.data is not None:
            wire.append(value.data)
        return wire
    raise TypeError(
        f"cannot encode a value of type {_type_name(kind)!r}: pyzdb carries None, bool, int, "
        f"float, str, bytes, list, tuple, dict, set, frozenset and pyzdb.File"
    )


class _LocalPacker(threading.local):
    """One msgpack Packer per thread: reusing it halves the cost of encoding a small message
    (0.7 vs 1.9 us), and a Packer must not be shared between threads."""

    def __init__(self) -> None:
        self.packer = msgpack.Packer(default=_encode_other, use_bin_type=True, strict_types=True)
        self.native = msgpack.Packer(use_bin_type=True, strict_types=False)


_LOCAL = _LocalPacker()


def encode_value(value: object) -> bytes:
    """Encode one value of the data model as msgpack bytes, type for type.

    Raises TypeError naming the type of a value that is not data (a function, a generator, a
    range, an object), and ValueError for nesting deeper than `MAX_DEPTH`. bytearray and
    memoryview are written as bytes, by msgpack itself, before any hook sees them.
    """
    try:
        return _LOCAL.packer.pack(value)
    except UnicodeEncodeError:
        # A str with lone surrogates ('\ud800') is legal Python but not UTF-8. It is rare, so it
        # gets a second pass instead of slowing every str: 'surrogatepass' makes the packer
        # build a temporary bytes per str (1.6x slower on text-heavy values).
        return msgpack.packb(
            value,
            default=_encode_other,
            use_bin_type=True,
            strict_types=True,
            unicode_errors="surrogatepass",
        )


def encode_wire(value: object, native: bool) -> bytes:
    """`encode_value`, faster for a value of scalars, dicts and lists only (`native`, as
    `values.Measure.native` finds it).

    For such a value msgpack writes the store's dict and list subclasses itself, in C, where
    `encode_value`'s strict packer calls its Python hook once per container (a quarter of the
    time on a list of records). The bytes are the same: what this packer would write
    differently is excluded by the caller's measure (a tuple or set would become an array) or
    refused by it (an int beyond 64 bits, a lone surrogate), and then goes to `encode_value`.
    """
    if native:
        try:
            return _LOCAL.native.pack(value)
        except (OverflowError, UnicodeEncodeError):
            pass
    return encode_value(value)


@dataclass(frozen=True, slots=True)
class Encoded:
    """A value already encoded by `encode_value`, which `pack` splices into a reply as is.

    The server encodes a query result inside the unit, where it also checks the result budget
    against the encoded size. Wrapping those bytes as `Reply(id, True, Encoded(data))` sends
    them without encoding the value a second time.
    """

    data: bytes

    def __post_init__(self) -> None:
        if type(self.data) is not bytes:
            _fail("Encoded.data must be bytes", self.data)


def pack(message: Request | Reply) -> bytes:
    """Encode a message as one frame."""
    if type(message) is Reply and type(message.value) is Encoded:
        if message.error is None:
            return pack_value_reply(message.id, message.value, message.seq)
        wire = message.to_wire()
        parts = [_LOCAL.packer.pack_array_header(len(wire))]
        parts += [item.data if type(item) is Encoded else encode_value(item) for item in wire]
        return b"".join(parts)
    return encode_value(message.to_wire())


def pack_value_reply(request_id: int, value: Encoded, seq: int) -> bytes:
    """`pack(Reply(request_id, True, value, seq))` without building the `Reply`.

    The server's answer to every query and execute; the fields are checked as `Reply` checks
    them, and the frame is the same bytes.
    """
    if type(request_id) is not int or not 0 <= request_id <= _MAX_ID:
        _fail(_RULE_REPLY_ID, request_id)
    if type(seq) is not int or not 0 <= seq <= _MAX_ID:
        _fail("reply seq is an int >= 0", seq)
    if type(value) is not Encoded:
        _fail("an encoded reply value is an Encoded", value)
    packer = _LOCAL.packer
    return b"".join(
        (_REPLY_ARRAY_HEAD, packer.pack(request_id), b"\xc3", value.data, packer.pack(seq), b"\xc0")
    )


# ---------------------------------------------------------------------------------------------
# Decoding


class _Marker:
    """What an extension value decodes to: a tag that `_Decoder.list_hook` consumes."""

    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code


_MARKERS: Final = {
    code: _Marker(code) for code in (_EXT_TUPLE, _EXT_SET, _EXT_FROZENSET, _EXT_BIGINT, _EXT_FILE)
}
#: Map key types whose hashes Python randomizes per process, so no sender can make them collide.
_RANDOMIZED_KEYS: Final = frozenset((str, bytes))
#: Map key types of the data model; a tuple key holds these (and tuples) only.
_KEY_TYPES: Final = frozenset((str, bytes, int, float, bool, type(None), tuple))
_first = itemgetter(0)


class _Recheck(Exception):
    """This pass met a value it does not handle; decode again in the next pass."""


# The passes of a decode (see `_Decoder`).
_PLAIN: Final = 0
_HOOKED: Final = 1
_CHECKED: Final = 2


class _Decoder:
    """The hooks of one decode pass. The state lives per call, so threads never share it.

    A frame decodes in the first pass that can take it:

    - `_PLAIN`: msgpack alone, at its full speed, with no hook per array or map. The first
      marker ends the pass.
    - `_HOOKED`: `list_hook` turns marked arrays into tuples, sets, big ints and Files. It
      counts the hashable values a sender could make collide, and it ends the pass at a frozenset
      or a File (either may be hashed as a map key), or at more than `_FAST_PASS_HASHABLES`.
    - `_CHECKED`: `pairs_hook` also validates every map key and checks maps and sets against
      hash flooding, at about twice the cost of the plain pass on dict-heavy frames.
    """

    __slots__ = ("level", "markers", "consumed", "hashables")

    def __init__(self, level: int) -> None:
        self.level = level
        self.markers = 0  # extension values seen
        self.consumed = 0  # ... and consumed as the first item of an array
        self.hashables = 0

    def ext_hook(self, code: int, payload: bytes) -> _Marker:
        # `payload` is always empty: max_ext_len=0 refused any other in C.
        marker = _MARKERS.get(code)
        if marker is None:
            raise ProtocolError(f"unknown extension type {code}")
        if self.level == _PLAIN:
            raise _Recheck
        self.markers += 1
        return marker

    def list_hook(self, items: list[Any]) -> Any:
        # Called for every array: the common case (no marker) returns after one type check.
        if not items or type(items[0]) is not _Marker:
            return items
        self.consumed += 1
        code = items[0].code
        if code == _EXT_TUPLE:
            self._count_hashable()
            return tuple(items[1:])
        if code == _EXT_SET:
            members = items[1:]
            if self.level == _CHECKED:
                _check_collisions(members, "set members")
            return set(members)
        if code == _EXT_FROZENSET:
            self._needs_checking()
            members = items[1:]
            _check_collisions(members, "frozenset members")
            return frozenset(members)
        if code == _EXT_BIGINT:
            return self._bigint(items)
        return self._file(items)

    def pairs_hook(self, pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        key_types = set(map(type, map(_first, pairs)))
        if not key_types <= _RANDOMIZED_KEYS:
            if not key_types <= _KEY_TYPES:
                bad = min(key_types - _KEY_TYPES, key=lambda kind: kind.__name__)
                name = "an extension value" if bad is _Marker else f"a {bad.__name__}"
                raise ProtocolError(f"a map key may not be {name}")
            if tuple in key_types:
                for key, _ in pairs:
                    if type(key) is tuple:
                        _check_tuple_key(key)
            _check_collisions(list(map(_first, pairs)), "map keys")
        return dict(pairs)

    def _count_hashable(self) -> None:
        if self.level == _HOOKED:
            self.hashables += 1
            if self.hashables > _FAST_PASS_HASHABLES:
                raise _Recheck

    def _needs_checking(self) -> None:
        if self.level == _HOOKED:
            raise _Recheck

    def _bigint(self, items: list[Any]) -> int:
        if len(items) != 2 or type(items[1]) is not bytes or not items[1]:
            raise ProtocolError("a big int is one non-empty bytes item")
        value = int.from_bytes(items[1], "big", signed=True)
        if _INT64_MIN <= value <= _UINT64_MAX:
            raise ProtocolError("a big int within 64 bits must be a msgpack int")
        self._count_hashable()
        return value

    def _file(self, items: list[Any]) -> File:
        if len(items) not in (4, 5):
            raise ProtocolError("a pyzdb.File is digest, name, size and optional pending data")
        self._needs_checking()
        try:  # File checks each field itself, and pending data against the digest
            return File(
                digest=items[1],
                name=items[2],
                size=items[3],
                data=items[4] if len(items) == 5 else None,
            )
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"invalid pyzdb.File: {exc}") from None


def _check_tuple_key(key: tuple[Any, ...]) -> None:
    """Refuse a tuple key holding anything but scalars and tuples (a frozenset, a File)."""
    stack = [key]
    while stack:
        for item in stack.pop():
            kind = type(item)
            if kind is tuple:
                stack.append(item)
            elif kind not in _KEY_TYPES:
                raise ProtocolError(f"a map key may not hold a {kind.__name__}")


def _check_collisions(values: list[Any], what: str) -> None:
    """Refuse values whose hashes collide so often that a dict or set of them goes quadratic.

    The hashes go in a set of ints, which cannot collide this way: one O(n) pass in C. Needs
    hashable values; an unhashable one raises TypeError, which the caller reports.
    """
    if len(values) > MAX_COLLISIONS and len(values) - len(set(map(hash, values))) > MAX_COLLISIONS:
        raise ProtocolError(
            f"more than {MAX_COLLISIONS} {what} share a hash with another: refused as hash flooding"
        )


_NO_PAUSE = nullcontext()


def _frame(data: Any, max_size: int) -> memoryview:
    """`data` as a flat byte view, refused when it is not bytes-like, empty or over `max_size`.

    Bytes, bytearray, a ZeroMQ frame and any C-contiguous buffer will do; casting to bytes makes
    the size, the version peek and msgpack all see the same bytes.
    """
    try:
        view = memoryview(data).cast("B")
    except (TypeError, ValueError):  # not a buffer, not contiguous, or released
        raise ProtocolError(
            f"a message is a contiguous bytes-like object, not {type(data).__name__}"
        ) from None
    if view.nbytes > max_size:
        raise ProtocolError(f"message of {view.nbytes} bytes exceeds the limit of {max_size} bytes")
    if not view.nbytes:
        raise ProtocolError("empty message")
    return view


def _decode(view: memoryview, level: int) -> Any:
    size = view.nbytes
    decoder = _Decoder(level)
    try:
        value = msgpack.unpackb(
            view,
            raw=False,
            use_list=True,
            strict_map_key=False,
            unicode_errors="surrogatepass",
            ext_hook=decoder.ext_hook,
            list_hook=decoder.list_hook if level != _PLAIN else None,
            object_pairs_hook=decoder.pairs_hook if level == _CHECKED else None,
            # No declared length may exceed the frame (msgpack's own default for unpackb,
            # spelled out): a header claiming 2**32 items cannot make the parser preallocate.
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size // 2,
            max_ext_len=0,
        )
    except (ProtocolError, _Recheck):
        raise
    except msgpack.ExtraData as exc:
        raise ProtocolError(f"{len(exc.extra)} bytes follow the message") from None
    except msgpack.StackError:
        raise ProtocolError(f"message nests deeper than {MAX_DEPTH} levels") from None
    except msgpack.FormatError:
        raise ProtocolError("message is not msgpack: it holds the reserved byte 0xc1") from None
    except (ValueError, TypeError, OverflowError) as exc:
        hint = " (no extension value may carry a payload)" if "max_ext_len" in str(exc) else ""
        raise ProtocolError(f"malformed message: {exc}{hint}") from None
    except MemoryError:
        raise ProtocolError(f"message of {size} bytes does not fit in memory") from None
    if decoder.markers != decoder.consumed:
        raise ProtocolError("an extension value may only stand first in an array")
    return value


def _decode_frame(view: memoryview) -> Any:
    with gc_paused if view.nbytes >= _GC_PAUSE_BYTES else _NO_PAUSE:
        try:
            return _decode(view, _PLAIN)
        except _Recheck:
            pass
        try:
            return _decode(view, _HOOKED)
        except _Recheck:
            return _decode(view, _CHECKED)


def decode_value(data: bytes | bytearray | memoryview, max_size: int) -> Any:
    """Decode bytes made by `encode_value`; anything wrong raises ProtocolError.

    `max_size` is the largest frame the caller accepts (`MAX_REQUEST_SIZE`, `MAX_REPLY_SIZE`);
    a larger one is refused before it is parsed.
    """
    return _decode_frame(_frame(data, max_size))


def _check_version(view: memoryview) -> None:
    """Refuse a frame whose version byte (rule 1) is missing or unknown, before decoding it."""
    head = bytes(view[:6])
    offset = 1 if 0x91 <= head[0] <= 0x9F else {0xDC: 3, 0xDD: 5}.get(head[0])
    if offset is None or len(head) <= offset or head[offset] > 0x7F:
        raise ProtocolError(
            "not a pyzdb message: a frame is a msgpack array that opens with the protocol version"
        )
    version = head[offset]
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            f"protocol version {version} is not supported; this peer speaks version "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}"
        )


def unpack(data: bytes | bytearray | memoryview, max_size: int) -> Request | Reply:
    """Decode one frame into the message it holds; anything wrong raises ProtocolError."""
    view = _frame(data, max_size)
    _check_version(view)
    wire = _decode_frame(view)
    kind = wire[1] if type(wire) is list and len(wire) > 1 else None
    if type(kind) is not int or kind not in (_REQUEST, _REPLY):
        raise ProtocolError(f"unknown message kind {kind!r}: 0 is a request, 1 a reply")
    return Request.from_wire(wire) if kind == _REQUEST else Reply.from_wire(wire)


def _no_marker(code: int, payload: bytes) -> Any:
    """The fast path's ext hook: a frame with any marker takes the general path."""
    raise _Recheck


def _decode_small(data: bytes) -> Any:
    """One msgpack pass over a small frame with the general path's bounds, or `_Recheck`.

    The caller checked the head bytes: an array of the message's item count, whose version and
    kind are the expected ones (rule 1 holds: the version is read before anything is decoded).
    The parse is the plain pass of `_decode`, with the same limits (no declared length beyond
    the frame, `MAX_DEPTH`, no extension payload), so it is exactly as safe; a marker, or
    anything wrong at all, sends the frame to the general path, which decodes the marked types
    and raises the ProtocolError that names what is wrong.
    """
    size = len(data)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            unicode_errors="surrogatepass",
            ext_hook=_no_marker,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size // 2,
            max_ext_len=0,
        )
    except Exception:
        raise _Recheck from None


def decode_request(data: bytes | bytearray | memoryview, max_size: int) -> Request:
    """The server's entry point: one frame into a validated `Request`, or ProtocolError.

    A small frame without markers (nearly every request) is decoded in one pass and its fields
    validated by `Request` itself; everything else takes the general path of `unpack`.
    """
    if (
        type(data) is bytes
        and len(data) < _SMALL_FRAME
        and len(data) <= max_size
        and data[:3] == _REQUEST_ARRAY_HEAD
    ):
        try:
            wire = _decode_small(data)
        except _Recheck:
            pass
        else:
            return Request(*wire[2:])  # the head guaranteed 10 items, version 1, kind 0
    message = unpack(data, max_size)
    if type(message) is not Request:
        raise ProtocolError("expected a request, got a reply")
    return message


def decode_reply(data: bytes | bytearray | memoryview, max_size: int) -> Reply:
    """The client's entry point: one frame into a validated `Reply`, or ProtocolError.

    The fast path of `decode_request` serves small successful replies without markers.
    """
    if (
        type(data) is bytes
        and len(data) < _SMALL_FRAME
        and len(data) <= max_size
        and data[:3] == _REPLY_ARRAY_HEAD
    ):
        try:
            wire = _decode_small(data)
        except _Recheck:
            pass
        else:
            if wire[6] is None:  # the head guaranteed 7 items, version 1, kind 1
                return Reply(wire[2], wire[3], wire[4], wire[5])
            return Reply.from_wire(wire)
    message = unpack(data, max_size)
    if type(message) is not Reply:
        raise ProtocolError("expected a reply, got a request")
    return message


#: Version and kind bytes of a version-1 request, and the widths of msgpack's uint tags.
_REQUEST_HEAD: Final = bytes((PROTOCOL_VERSION, _REQUEST))
_UINT_WIDTHS: Final = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}


def request_id_of(data: Any) -> int:
    """The id of a request frame that failed to decode, or 0 when even that is unreadable.

    The server answers a malformed request with this id, so a client with several requests in
    flight fails the one that caused it. Id 0 means "the frame you just sent". This reads a
    version-1 request's first bytes only (array header, version, kind, id) and never raises.
    """
    try:
        head = bytes(memoryview(data).cast("B")[:12])
    except (TypeError, ValueError):
        return 0
    if len(head) < 4 or not 0x93 <= head[0] <= 0x9F or head[1:3] != _REQUEST_HEAD:
        return 0
    if head[3] <= 0x7F:
        return head[3]
    width = _UINT_WIDTHS.get(head[3], 0)
    if not width or len(head) < 4 + width:
        return 0
    value = int.from_bytes(head[4 : 4 + width], "big")
    return value if value <= _MAX_ID else 0


# ---------------------------------------------------------------------------------------------
# Messages


_RULE_REQUEST_ID: Final = f"request id is an int in 1..{_MAX_ID}"
_RULE_REPLY_ID: Final = f"reply id is an int in 0..{_MAX_ID}"
_RULE_OP: Final = f"request op is one of {', '.join(OPS)}"
_RULE_SESSION: Final = f"request session is bytes, at most {MAX_SESSION_BYTES}"


def _require(ok: bool, rule: str, value: object) -> None:
    """Raise ProtocolError stating the broken `rule` and what arrived instead."""
    if not ok:
        _fail(rule, value)


def _fail(rule: str, value: object) -> NoReturn:
    shown = reprlib.repr(value)  # bounded: the value may be megabytes
    raise ProtocolError(f"{rule}, got {shown} ({type(value).__name__})")


#: Names `_is_name` accepted, so the same few (`db`, `k0`, `value`) are checked once; bounded,
#: since names come from the network.
_GOOD_NAMES: set[str] = set()
_GOOD_NAMES_MAX: Final = 4096


def _is_name(value: object) -> bool:
    """A name the server may bind in a query's globals: an identifier, not a keyword, not
    `_`-led (the sandbox refuses those: they reach dunders, and `__builtins__` would replace the
    sandbox's builtins)."""
    if type(value) is not str:
        return False
    if value in _GOOD_NAMES:
        return True
    if value.isidentifier() and not keyword.iskeyword(value) and not value.startswith("_"):
        if len(_GOOD_NAMES) < _GOOD_NAMES_MAX:
            _GOOD_NAMES.add(value)
        return True
    return False


def _are_names(names: Any) -> bool:
    """`_is_name` of every item (a dict's keys): the hot path of `Request.__post_init__`."""
    for name in names:
        if type(name) is not str or (name not in _GOOD_NAMES and not _is_name(name)):
            return False
    return True


def _is_count(value: object, low: int = 0) -> bool:
    return type(value) is int and low <= value <= _MAX_ID


def _check_wire(wire: Any, kind: int, items: int, what: str) -> None:
    """Check the frame around a message's fields: item count, version, kind."""
    if type(wire) is not list or len(wire) != items:
        _fail(f"a {what} is an array of {items} items", wire)
    if type(wire[0]) is not int or wire[0] != PROTOCOL_VERSION:
        _fail(f"a {what} opens with version {PROTOCOL_VERSION}", wire[0])
    if type(wire[1]) is not int or wire[1] != kind:
        _fail(f"a {what} has kind {kind}", wire[1])


@dataclass(frozen=True, slots=True)
class Request:
    """One request. Constructing one validates every field, so a malformed request raises
    ProtocolError where it is built, whether by the client or by `decode_request`.

    `session` is a random id the client chooses once; the server remembers recent request ids
    per session, so a request retried after a reconnect runs at most once. `min_seq` makes a
    replica wait until it has applied that journal sequence (read-your-writes).
    """

    id: int
    op: str
    source: str = ""
    root: str = ROOT_NAME
    params: dict[str, Any] = field(default_factory=dict)
    syntax: str = "eval"
    session: bytes = b""
    min_seq: int = 0

    def __post_init__(self) -> None:
        # Every rule below in one expression (the hot path); a request that breaks any of them
        # goes through the rules one by one, for the message that names it.
        if (
            type(self.id) is int
            and 0 < self.id <= _MAX_ID
            and type(self.op) is str
            and self.op in _OP_NAMES
            and type(self.source) is str
            and type(self.root) is str
            and (self.root in _GOOD_NAMES or _is_name(self.root))
            and type(self.params) is dict
            and _are_names(self.params)
            and type(self.syntax) is str
            and self.syntax in SYNTAXES
            and type(self.session) is bytes
            and len(self.session) <= MAX_SESSION_BYTES
            and type(self.min_seq) is int
            and 0 <= self.min_seq <= _MAX_ID
        ):
            return
        # Rules are constant strings, so a valid request costs no formatting.
        _require(_is_count(self.id, 1), _RULE_REQUEST_ID, self.id)
        _require(type(self.op) is str and self.op in OPS, _RULE_OP, self.op)
        _require(type(self.source) is str, "request source is a str", self.source)
        _require(_is_name(self.root), "request root is an identifier not led by '_'", self.root)
        _require(type(self.params) is dict, "request params is a dict", self.params)
        for name in self.params:
            _require(_is_name(name), "a request param name is an identifier not led by '_'", name)
        _require(
            self.syntax in SYNTAXES and type(self.syntax) is str,
            "request syntax is 'eval' or 'exec'",
            self.syntax,
        )
        _require(
            type(self.session) is bytes and len(self.session) <= MAX_SESSION_BYTES,
            _RULE_SESSION,
            self.session,
        )
        _require(_is_count(self.min_seq), "request min_seq is an int >= 0", self.min_seq)

    def to_wire(self) -> list[Any]:
        """The array this request travels as (see the module docstring)."""
        return [
            PROTOCOL_VERSION,
            _REQUEST,
            self.id,
            self.op,
            self.source,
            self.root,
            self.params,
            self.syntax,
            self.session,
            self.min_seq,
        ]

    @classmethod
    def from_wire(cls, wire: Any) -> Request:
        """The request a decoded array holds; ProtocolError if it holds none."""
        _check_wire(wire, _REQUEST, 10, "request")
        return cls(*wire[2:])


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception as it crosses the wire: the type's name and never the type itself (see
    `error_to_info` and `info_to_exception`)."""

    type: str
    args: tuple[Any, ...]
    message: str
    note: str = ""
    line: int | None = None
    column: int | None = None
    budget: str = ""

    def __post_init__(self) -> None:
        _require(
            type(self.type) is str and self.type != "", "error type is a non-empty str", self.type
        )
        _require(type(self.args) is tuple, "error args is a tuple", self.args)
        _require(type(self.message) is str, "error message is a str", self.message)
        _require(type(self.note) is str, "error note is a str", self.note)
        _require(
            self.line is None or type(self.line) is int, "error line is an int or None", self.line
        )
        _require(
            self.column is None or type(self.column) is int,
            "error column is an int or None",
            self.column,
        )
        _require(type(self.budget) is str, "error budget is a str", self.budget)

    def to_wire(self) -> list[Any]:
        return [self.type, self.args, self.message, self.note, self.line, self.column, self.budget]

    @classmethod
    def from_wire(cls, wire: Any) -> ErrorInfo:
        _require(type(wire) is list and len(wire) == 7, "an error is an array of 7 items", wire)
        return cls(*wire)


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to the request with the same `id`: a value (`ok`) or an `ErrorInfo`.

    `seq` is the journal sequence the answer reflects, which a later read passes as
    `Request.min_seq`. Id 0 answers a frame whose id could not be read.
    """

    id: int
    ok: bool
    value: Any = None
    seq: int = 0
    error: ErrorInfo | None = None

    def __post_init__(self) -> None:
        # The rules below in one expression (the hot path), then one by one for the message.
        if (
            type(self.id) is int
            and 0 <= self.id <= _MAX_ID
            and type(self.seq) is int
            and 0 <= self.seq <= _MAX_ID
            and (
                self.error is None
                if self.ok is True
                else (self.ok is False and type(self.error) is ErrorInfo and self.value is None)
            )
        ):
            return
        _require(_is_count(self.id), _RULE_REPLY_ID, self.id)
        _require(type(self.ok) is bool, "reply ok is a bool", self.ok)
        _require(_is_count(self.seq), "reply seq is an int >= 0", self.seq)
        if self.ok:
            _require(self.error is None, "a successful reply has no error", self.error)
        else:
            _require(type(self.error) is ErrorInfo, "a failed reply has an error", self.error)
            _require(self.value is None, "a failed reply has no value", self.value)

    def to_wire(self) -> list[Any]:
        """The array this reply travels as (see the module docstring)."""
        error = None if self.error is None else self.error.to_wire()
        return [PROTOCOL_VERSION, _REPLY, self.id, self.ok, self.value, self.seq, error]

    @classmethod
    def from_wire(cls, wire: Any) -> Reply:
        """The reply a decoded array holds; ProtocolError if it holds none."""
        _check_wire(wire, _REPLY, 7, "reply")
        message_id, ok, value, seq, error = wire[2:]
        info = None if error is None else ErrorInfo.from_wire(error)
        return cls(message_id, ok, value, seq, info)


# ---------------------------------------------------------------------------------------------
# Errors across the wire


def _table_class(cls: type) -> type | None:
    """`cls` itself if the tables of pyzdb.errors name it, else its nearest ancestor they name.

    The search stops at `Exception`: an unknown server-side failure should reach the client as
    a pyzdb `Error` that names it, not as a bare Exception.
    """
    for candidate in cls.__mro__:
        name = candidate.__name__
        if QUERY_EXCEPTIONS.get(name) is candidate or PYZDB_EXCEPTIONS.get(name) is candidate:
            return candidate if candidate is not Exception or cls is Exception else None
    return None


def _is_data(value: object) -> bool:
    try:
        encode_value(value)
    except Exception:  # not data, too deep, or an object whose methods raise: all the same here
        return False
    return True


def _text(value: object, show: Any) -> str:
    """`show(value)` (str or repr), or a placeholder when it raises: an error report must not
    fail because of the object it reports on."""
    try:
        return show(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def error_to_info(exc: BaseException) -> ErrorInfo:
    """The server side: describe any exception so the client can raise its closest equivalent.

    A class that the tables of pyzdb.errors name travels with its args (each arg that is not
    data travels as its repr). A subclass of one travels as that class, with its own name at the
    head of the message: UnicodeDecodeError arrives as UnicodeError("UnicodeDecodeError: ...").
    Any other class travels by name only. The note, the line and column the sandbox attached,
    and a LimitExceeded's budget travel too.
    """
    cls = type(exc)
    message = _text(exc, str)
    known = _table_class(cls)
    if known is cls:
        name = cls.__name__
        args = tuple(arg if _is_data(arg) else _text(arg, repr) for arg in exc.args)
    else:
        own = _type_name(cls)
        if known is not None:
            name, message = known.__name__, f"{own}: {message}"
        else:
            name = own
        args = (message,)
    notes = getattr(exc, "__notes__", None)
    note = "\n".join(_text(item, str) for item in notes) if isinstance(notes, list) else ""
    line = getattr(exc, "pyzdb_line", None)
    column = getattr(exc, "pyzdb_column", None)
    if line is None and isinstance(exc, SyntaxError):
        line, column = exc.lineno, exc.offset
    budget = exc.budget if isinstance(exc, LimitExceeded) else ""
    return ErrorInfo(
        name,
        args,
        message,
        note,
        line if type(line) is int else None,
        column if type(column) is int else None,
        budget if type(budget) is str else _text(budget, str),
    )


def info_to_exception(info: ErrorInfo) -> BaseException:
    """The client side: the exception to raise for a failed reply.

    A name in QUERY_EXCEPTIONS becomes that built-in type with the same args, and a name in
    PYZDB_EXCEPTIONS becomes that pyzdb class (a LimitExceeded keeps its budget). Any other name
    becomes `Error("<name>: <message>")`: no class named by the wire is ever looked up anywhere
    else, let alone instantiated. The note is added with `add_note` (Python 3.11+), and the
    line and column become the attributes `pyzdb_line` and `pyzdb_column`.
    """
    cls = QUERY_EXCEPTIONS.get(info.type) or PYZDB_EXCEPTIONS.get(info.type)
    if cls is None:
        exc: BaseException = Error(f"{info.type}: {info.message}")
    else:
        try:
            exc = cls(*info.args)
        except Exception:  # args that do not fit the constructor: the message still does
            exc = cls(info.message)
        if isinstance(exc, LimitExceeded):
            exc.budget = info.budget
    if info.note and hasattr(exc, "add_note"):
        exc.add_note(info.note)
    exc.pyzdb_line = info.line  # type: ignore[attr-defined]
    exc.pyzdb_column = info.column  # type: ignore[attr-defined]
    return exc


__all__ = [
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "MAX_REQUEST_SIZE",
    "MAX_REPLY_SIZE",
    "MAX_DEPTH",
    "MAX_SESSION_BYTES",
    "MAX_COLLISIONS",
    "OPS",
    "SYNTAXES",
    "encode_value",
    "encode_wire",
    "decode_value",
    "Encoded",
    "pack",
    "pack_value_reply",
    "unpack",
    "decode_request",
    "decode_reply",
    "request_id_of",
    "Request",
    "Reply",
    "ErrorInfo",
    "error_to_info",
    "info_to_exception",
]
