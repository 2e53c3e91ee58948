"""The way back from the wire: bytes to values of the data model, safely, in up to three passes.

Why three passes, and every limit a frame is held to, are in `pyzdb/codec/README.md`.

    >>> from pyzdb.codec import encode_value
    >>> decode_value(encode_value({"t": (1, 2), "s": {3}}), 1024)
    {'t': (1, 2), 's': {3}}

Malformed input raises `pyzdb.errors.ProtocolError` with a message that names what is wrong
(the README lists every case). Any other exception out of a decode function is a bug.
"""

from __future__ import annotations

from contextlib import nullcontext
from operator import itemgetter
from typing import Any, Final

import msgpack

from pyzdb.codec.wire import (
    EXT_BIGINT,
    EXT_FILE,
    EXT_FROZENSET,
    EXT_SET,
    EXT_TUPLE,
    MAX_COLLISIONS,
    MAX_WIRE_DEPTH,
)
from pyzdb.errors import ProtocolError
from pyzdb.gcpause import gc_paused
from pyzdb.values import File

_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1
#: Tuples, frozensets, big ints and Files a decode may build before it reruns in the checked
#: pass: with full hash collisions, 1000 keys cost ~10 ms to insert.
_FAST_PASS_HASHABLES: Final = 1000
#: Frames from this size up decode with the cyclic GC paused (`pyzdb.gcpause`): decoding makes
#: a container per array and map, none of which can form a cycle, yet every 700 allocations
#: would wake the collector (a 100k-dict reply decodes 3x slower).
_GC_PAUSE_BYTES: Final = 64 * 1024


class _Marker:
    """What an extension value decodes to: a tag that `_Decoder.list_hook` consumes."""

    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code


_MARKERS: Final = {
    code: _Marker(code) for code in (EXT_TUPLE, EXT_SET, EXT_FROZENSET, EXT_BIGINT, EXT_FILE)
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
        if code == EXT_TUPLE:
            self._count_hashable()
            return tuple(items[1:])
        if code == EXT_SET:
            members = items[1:]
            if self.level == _CHECKED:
                _check_collisions(members, "set members")
            return set(members)
        if code == EXT_FROZENSET:
            self._needs_checking()
            members = items[1:]
            _check_collisions(members, "frozenset members")
            return frozenset(members)
        if code == EXT_BIGINT:
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


def frame_view(data: Any, max_size: int) -> memoryview:
    """`data` as a flat byte view, refused when it is not bytes-like, empty or over `max_size`.

    Bytes, bytearray, a ZeroMQ frame and any C-contiguous buffer will do; casting to bytes makes
    the size, a version peek and msgpack all see the same bytes.

    >>> frame_view(bytearray(b"\\x91\\x00"), 16).nbytes
    2
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
        raise ProtocolError(f"message nests deeper than {MAX_WIRE_DEPTH} levels") from None
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


def decode_view(view: memoryview) -> Any:
    """Decode a frame that `frame_view` accepted, in the first pass that can take it.

    >>> decode_view(frame_view(b"\\x92\\x93\\xc7\\x00\\x01\\x01\\x02\\x03", 64))
    [(1, 2), 3]
    """
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

    >>> decode_value(b"\\xc1", 16)
    Traceback (most recent call last):
    ...
    pyzdb.errors.ProtocolError: message is not msgpack: it holds the reserved byte 0xc1
    """
    return decode_view(frame_view(data, max_size))


class _NotPlain:
    """The type of `NOT_PLAIN`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_PLAIN"


#: What `decode_plain` answers for a frame it leaves to `decode_value`: no msgpack value is it.
NOT_PLAIN: Final = _NotPlain()


def _no_marker(code: int, payload: bytes) -> Any:
    """The plain pass's ext hook: a frame with any marker takes the general path."""
    raise _Recheck


def decode_plain(data: bytes) -> Any:
    """One msgpack pass over `data` with the general path's bounds, or `NOT_PLAIN`.

    The fast path of small messages (`pyzdb.net.messages`): the caller checked the frame's type
    and size. The parse is the plain pass of `decode_value`, with the same limits (no declared
    length beyond the frame, `MAX_WIRE_DEPTH`, no extension payload), so it is exactly as safe; a
    marker, or anything wrong at all, answers `NOT_PLAIN`, and the caller decodes the frame the
    general way, which builds the marked types and raises the ProtocolError that names what is
    wrong. A test drives both on the same frames.

    >>> decode_plain(b"\\x92\\x01\\xc0")
    [1, None]
    >>> decode_plain(b"\\x92\\xc7\\x00\\x01\\x01"), decode_plain(b"\\xc1")  # a tuple; not msgpack
    (NOT_PLAIN, NOT_PLAIN)
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
        return NOT_PLAIN


__all__ = ["NOT_PLAIN", "decode_value", "decode_view", "decode_plain", "frame_view"]
