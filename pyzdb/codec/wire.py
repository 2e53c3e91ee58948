"""The wire format of pyzdb's data model: its extension codes, its limits, and the encoder.

The format, its markers, its limits and how it relates to the size model are described in
`pyzdb/codec/README.md`; the comments below say why each piece is as it is. The way back is
`pyzdb.codec.decode`. The messages that carry these values (requests, replies) are
`pyzdb.net.messages`: the engine and the storage use this codec too, and never load the
network side.

    >>> encode_value({"t": (1, 2)})
    b'\\x81\\xa1t\\x93\\xc7\\x00\\x01\\x01\\x02'
"""

from __future__ import annotations

import reprlib
import threading
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from pyzdb.errors import ProtocolError
from pyzdb.values import File

# ---------------------------------------------------------------------------------------------
# Limits

#: Default `max_size` of a server decoding requests (see the README's "Limits").
MAX_REQUEST_SIZE: Final = 16 * 1024 * 1024
#: Default `max_size` of a client decoding replies (see the README's "Limits").
MAX_REPLY_SIZE: Final = 512 * 1024 * 1024
#: Deepest nesting in a frame: the fixed stack of msgpack's C parser and packer, not ours to set.
MAX_WIRE_DEPTH: Final = 1024
#: Map keys or set members per container that may share a hash with another before the frame is
#: refused as hash flooding; distinct values rarely collide (`hash(-1) == hash(-2)`).
MAX_COLLISIONS: Final = 64

# Extension codes of the markers. Codes are never reused: a new type is a new code.
EXT_TUPLE: Final = 1
EXT_SET: Final = 2
EXT_FROZENSET: Final = 3
EXT_BIGINT: Final = 4
EXT_FILE: Final = 5

# ---------------------------------------------------------------------------------------------
# Encoding

_TUPLE_MARK = msgpack.ExtType(EXT_TUPLE, b"")
_SET_MARK = msgpack.ExtType(EXT_SET, b"")
_FROZENSET_MARK = msgpack.ExtType(EXT_FROZENSET, b"")
_BIGINT_MARK = msgpack.ExtType(EXT_BIGINT, b"")
_FILE_MARK = msgpack.ExtType(EXT_FILE, b"")

#: The bytes of a `pyzdb.File`'s marker: a frame without them holds no File, so a client walks
#: only the replies that have them to attach blob readers (a bytes value may match: harmless).
FILE_MARKER: Final = msgpack.packb(_FILE_MARK)


def type_name(cls: type) -> str:
    """`dict`, `mymodule.Thing`: how messages name a type.

    >>> type_name(dict), type_name(File)
    ('dict', 'pyzdb.values.File')
    """
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def refusal(rule: str, value: object) -> ProtocolError:
    """The ProtocolError for a broken `rule`, showing what arrived instead.

    >>> refusal("a size is an int", "12")
    ProtocolError("a size is an int, got '12' (str)")
    """
    shown = reprlib.repr(value)  # bounded: the value may be megabytes
    return ProtocolError(f"{rule}, got {shown} ({type(value).__name__})")


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
        f"cannot encode a value of type {type_name(kind)!r}: pyzdb carries None, bool, int, "
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
    range, an object), and ValueError for nesting deeper than `MAX_WIRE_DEPTH`. bytearray and
    memoryview are written as bytes, by msgpack itself, before any hook sees them.

    >>> encode_value((1, "a"))
    b'\\x93\\xc7\\x00\\x01\\x01\\xa1a'
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
    `codec.Measure.native` finds it).

    For such a value msgpack writes the store's dict and list subclasses itself, in C, where
    `encode_value`'s strict packer calls its Python hook once per container (a quarter of the
    time on a list of records). The bytes are the same: what this packer would write
    differently is excluded by the caller's measure (a tuple or set would become an array) or
    refused by it (an int beyond 64 bits, a lone surrogate), and then goes to `encode_value`.

    >>> encode_wire({"a": [1]}, True) == encode_value({"a": [1]})
    True
    """
    if native:
        try:
            return _LOCAL.native.pack(value)
        except (OverflowError, UnicodeEncodeError):
            pass
    return encode_value(value)


def encode_array_header(count: int) -> bytes:
    """The msgpack header of an array of `count` items, for a frame spliced from parts.

    >>> encode_array_header(3)
    b'\\x93'
    """
    return _LOCAL.packer.pack_array_header(count)


@dataclass(frozen=True, slots=True)
class Encoded:
    """A value already encoded by `encode_value`, which a message splices in as is.

    The server encodes a query result inside the unit, where it also checks the result budget
    against the encoded size. Wrapping those bytes as `Reply(id, True, Encoded(data))` sends
    them without encoding the value a second time.
    """

    data: bytes

    def __post_init__(self) -> None:
        if type(self.data) is not bytes:
            raise refusal("Encoded.data must be bytes", self.data)


__all__ = [
    "MAX_REQUEST_SIZE",
    "MAX_REPLY_SIZE",
    "MAX_WIRE_DEPTH",
    "MAX_COLLISIONS",
    "EXT_TUPLE",
    "EXT_SET",
    "EXT_FROZENSET",
    "EXT_BIGINT",
    "EXT_FILE",
    "FILE_MARKER",
    "Encoded",
    "encode_value",
    "encode_wire",
    "encode_array_header",
    "refusal",
    "type_name",
]
