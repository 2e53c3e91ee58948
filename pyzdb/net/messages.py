"""The messages of pyzdb's wire: requests and replies, with no sockets in them.

Like h11, this module only turns bytes into messages and back; the sync client, the asyncio
client, the server and the replicas each bring their own I/O and share everything here. The
values inside the messages are `pyzdb.codec`'s (see its README for the value format and limits).

Frames. One ZeroMQ message part carries one msgpack array::

    request  [2, 0, id, op, source, root, params, syntax, session, min_seq, wait, txn]
    reply    [1, 1, id, ok, value, seq, error]
    error    None | [type, args, message, note, line, column, budget]

`Request`, `Reply` and `ErrorInfo` are the frozen dataclasses behind them, and each class's
fields, in order, are its layout: `to_wire`, `from_wire`, the fast decoders and the frame heads
all follow that one declaration (as h11 derives each event from its class). `pack(message)`
makes a frame and `decode_request` / `decode_reply` are the only ways back. Request ids start
at 1: a reply with id 0 refuses a frame whose id could not be read (see `request_id_of`).

    >>> decode_request(pack(Request(1, "query", "len(db)", wait=2.0)), 1024).wait
    2.0

Versions. Requests carry version 2, replies version 1: the rules, and the refusal of a frame of
another version, are `pyzdb.net.versions`'s.

Small messages. `decode_request` and `decode_reply` first try a frame under `_SMALL_FRAME`
whose first three bytes are the message's array header, version and kind: one plain msgpack
pass with the same bounds (`pyzdb.codec.decode_plain`), then the dataclass's own field checks.
That is nearly every request and reply, in about a third of the time; a marker or any problem
sends the frame down the general path, so what is accepted or refused, and the error message,
are the same (a test drives both paths on the same frames).

Malformed messages. Besides what the codec refuses, each case raises `ProtocolError` naming
it: not an array headed by a version; another version; a wrong message kind or item count; a
field of the wrong type or value.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Final

from pyzdb.api.capture import Syntax
from pyzdb.codec import NOT_PLAIN, Encoded, decode_plain, decode_view, encode_value, frame_view
from pyzdb.codec import refusal as _refusal
from pyzdb.errors import ProtocolError
from pyzdb.limits import ROOT_NAME
from pyzdb.net.errorinfo import ErrorInfo
from pyzdb.net.versions import (
    PROTOCOL_VERSION,
    REPLY_KIND,
    REPLY_VERSION,
    REQUEST_KIND,
    check_version,
)

# ---------------------------------------------------------------------------------------------
# Constants

#: Longest `Request.session`: a random id (16 bytes will do), not a place to store data in the
#: server's table of recent requests.
MAX_SESSION_BYTES: Final = 64
#: Longest `Request.wait`, in seconds (a day).
MAX_WAIT: Final = 86400

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

#: Frames shorter than this whose first bytes are a request's (or reply's) head take the fast
#: path of `decode_request` (`decode_reply`).
_SMALL_FRAME: Final = 16 * 1024
_MAX_ID: Final = 2**63 - 1

_RULE_REQUEST_ID: Final = f"request id is an int in 1..{_MAX_ID}"
_RULE_REPLY_ID: Final = f"reply id is an int in 0..{_MAX_ID}"
_RULE_OP: Final = f"request op is one of {', '.join(OPS)}"
_RULE_SESSION: Final = f"request session is bytes, at most {MAX_SESSION_BYTES}"
_RULE_WAIT: Final = f"request wait is None or seconds in 0..{MAX_WAIT}"


def _require(ok: bool, rule: str, value: object) -> None:
    """Raise ProtocolError stating the broken `rule` and what arrived instead."""
    if not ok:
        raise _refusal(rule, value)


# ---------------------------------------------------------------------------------------------
# Field rules

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


def _is_wait(value: object) -> bool:
    if value is None:
        return True
    return (type(value) is float or type(value) is int) and 0 <= value <= MAX_WAIT


def _check_wire(wire: Any, kind: int, version: int, items: int, what: str) -> None:
    """Check the frame around a message's fields: item count, version, kind."""
    if type(wire) is not list or len(wire) != items:
        raise _refusal(f"a {what} is an array of {items} items", wire)
    if type(wire[0]) is not int or wire[0] != version:
        raise _refusal(f"a {what} opens with version {version}", wire[0])
    if type(wire[1]) is not int or wire[1] != kind:
        raise _refusal(f"a {what} has kind {kind}", wire[1])


# ---------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, slots=True)
class Request:
    """One request. Constructing one validates every field, so a malformed request raises
    ProtocolError where it is built, whether by the client or by `decode_request`.

    `session` is a random id the client chooses once; the server remembers recent request ids
    per session, so a request retried after a reconnect runs at most once. `min_seq` makes a
    replica wait until it has applied that journal sequence (read-your-writes). `wait` is how
    long the request may wait, in seconds: in the lock queue while another session holds the
    lock, or for a change to watch; None leaves it to the server (no wait in the queue, its long
    poll for a watch). `txn` says the request belongs to the lock its session holds, so the
    server refuses it once that lock is gone instead of running it outside the transaction.
    """

    id: int
    op: str
    source: str = ""
    root: str = ROOT_NAME
    params: dict[str, Any] = field(default_factory=dict)
    syntax: Syntax = "eval"
    session: bytes = b""
    min_seq: int = 0
    wait: float | None = None
    txn: bool = False

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
            and (
                self.wait is None
                or (type(self.wait) is float or type(self.wait) is int)
                and 0 <= self.wait <= MAX_WAIT
            )
            and type(self.txn) is bool
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
        _require(_is_wait(self.wait), _RULE_WAIT, self.wait)
        _require(type(self.txn) is bool, "request txn is a bool", self.txn)

    def to_wire(self) -> list[Any]:
        """The array this request travels as (see the module docstring)."""
        return _request_wire(self)

    @classmethod
    def from_wire(cls, wire: Any) -> Request:
        """The request a decoded array holds; ProtocolError if it holds none."""
        _check_wire(wire, REQUEST_KIND, PROTOCOL_VERSION, _REQUEST_ITEMS, "request")
        return cls(*wire[2:])


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
        return [REPLY_VERSION, REPLY_KIND, self.id, self.ok, self.value, self.seq, error]

    @classmethod
    def from_wire(cls, wire: Any) -> Reply:
        """The reply a decoded array holds; ProtocolError if it holds none."""
        _check_wire(wire, REPLY_KIND, REPLY_VERSION, _REPLY_ITEMS, "reply")
        message_id, ok, value, seq, error = wire[2:]
        info = None if error is None else ErrorInfo.from_wire(error)
        return cls(message_id, ok, value, seq, info)


def _wire_encoder(names: tuple[str, ...], version: int, kind: int) -> Callable[[Any], list[Any]]:
    """A message's `to_wire`, compiled once from its declared fields, as `dataclasses` compiles
    `__init__`: a literal list of attribute loads is 3x faster per request than
    `attrgetter(*names)`, and the field order stays written in one place."""
    items = "".join(f", message.{name}" for name in names)
    namespace: dict[str, Any] = {}
    exec(f"def to_wire(message):\n    return [{version}, {kind}{items}]", namespace)
    return namespace["to_wire"]


#: The fields of a request, in wire order: the declaration of `Request` above.
REQUEST_FIELDS: Final = tuple(item.name for item in fields(Request))
_request_wire = _wire_encoder(REQUEST_FIELDS, PROTOCOL_VERSION, REQUEST_KIND)
_REQUEST_ITEMS: Final = 2 + len(REQUEST_FIELDS)
_REPLY_ITEMS: Final = 2 + len(fields(Reply))


def _fixarray_head(items: int, version: int, kind: int) -> bytes:
    """The first three bytes of a message of `items` items: a msgpack fixarray (up to 15
    items), the version and the kind."""
    if items > 0x0F:
        raise ValueError(f"a message of {items} items needs a head other than a fixarray")
    return bytes((0x90 + items, version, kind))


_REQUEST_ARRAY_HEAD: Final = _fixarray_head(_REQUEST_ITEMS, PROTOCOL_VERSION, REQUEST_KIND)
_REPLY_ARRAY_HEAD: Final = _fixarray_head(_REPLY_ITEMS, REPLY_VERSION, REPLY_KIND)


# ---------------------------------------------------------------------------------------------
# Encoding


def pack(message: Request | Reply) -> bytes:
    """Encode a message as one frame.

    >>> pack(Reply(3, True, "ok"))
    b'\\x97\\x01\\x01\\x03\\xc3\\xa2ok\\x00\\xc0'
    """
    if type(message) is Reply and type(message.value) is Encoded:  # successful: see `Reply`
        return pack_value_reply(message.id, message.value, message.seq)
    return encode_value(message.to_wire())


def pack_value_reply(request_id: int, value: Encoded, seq: int) -> bytes:
    """`pack(Reply(request_id, True, value, seq))` without building the `Reply`.

    The server's answer to every query and execute; the fields are checked as `Reply` checks
    them, and the frame is the same bytes.
    """
    if type(request_id) is not int or not 0 <= request_id <= _MAX_ID:
        raise _refusal(_RULE_REPLY_ID, request_id)
    if type(seq) is not int or not 0 <= seq <= _MAX_ID:
        raise _refusal("reply seq is an int >= 0", seq)
    if type(value) is not Encoded:
        raise _refusal("an encoded reply value is an Encoded", value)
    head, ok, no_error = _REPLY_ARRAY_HEAD, b"\xc3", b"\xc0"
    return b"".join((head, encode_value(request_id), ok, value.data, encode_value(seq), no_error))


# ---------------------------------------------------------------------------------------------
# Decoding


def unpack(data: bytes | bytearray | memoryview, max_size: int) -> Request | Reply:
    """Decode one frame into the message it holds; anything wrong raises ProtocolError."""
    view = frame_view(data, max_size)
    check_version(view)
    wire = decode_view(view)
    kind = wire[1] if type(wire) is list and len(wire) > 1 else None
    if type(kind) is not int or kind not in (REQUEST_KIND, REPLY_KIND):
        raise ProtocolError(f"unknown message kind {kind!r}: 0 is a request, 1 a reply")
    return Request.from_wire(wire) if kind == REQUEST_KIND else Reply.from_wire(wire)


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
        wire = decode_plain(data)
        if wire is not NOT_PLAIN:
            return Request(*wire[2:])  # the head guaranteed the item count, version and kind
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
        wire = decode_plain(data)
        if wire is not NOT_PLAIN:
            if wire[6] is None:  # the head guaranteed the item count, version and kind
                return Reply(wire[2], wire[3], wire[4], wire[5])
            return Reply.from_wire(wire)
    message = unpack(data, max_size)
    if type(message) is not Reply:
        raise ProtocolError("expected a reply, got a request")
    return message


#: The widths of msgpack's uint tags.
_UINT_WIDTHS: Final = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}


def request_id_of(data: Any) -> int:
    """The id of a request frame that failed to decode, or 0 when even that is unreadable.

    The server answers a malformed request with this id, so a client with several requests in
    flight fails the one that caused it. Id 0 means "the frame you just sent". This reads a
    request's first bytes only (array header, version, kind, id: the same in every version, by
    rule 1 of `pyzdb.net.versions`), so a client of another version gets its refusal under its
    own id. It never raises.

    >>> request_id_of(pack(Request(300, "ping"))), request_id_of(b"junk")
    (300, 0)
    """
    try:
        head = bytes(memoryview(data).cast("B")[:12])
    except (TypeError, ValueError):
        return 0
    if len(head) < 4 or not 0x93 <= head[0] <= 0x9F or not 0 < head[1] <= 0x7F:
        return 0
    if head[2] != REQUEST_KIND:
        return 0
    if head[3] <= 0x7F:
        return head[3]
    width = _UINT_WIDTHS.get(head[3], 0)
    if not width or len(head) < 4 + width:
        return 0
    value = int.from_bytes(head[4 : 4 + width], "big")
    return value if value <= _MAX_ID else 0


__all__ = [
    "MAX_SESSION_BYTES",
    "MAX_WAIT",
    "OPS",
    "SYNTAXES",
    "REQUEST_FIELDS",
    "Request",
    "Reply",
    "pack",
    "pack_value_reply",
    "unpack",
    "decode_request",
    "decode_reply",
    "request_id_of",
]
