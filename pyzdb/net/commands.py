"""What a remote database does, written once for the sync and the asyncio client.

As redis-py's ``commands/core.py`` serves both of its clients, everything here but the socket
loop is shared by `Connection` (`pyzdb.net.client`) and `AsyncConnection` (`pyzdb.net.aio`):

- `ConnectionCore`: a connection's options (checked once, for both constructors), its state
  and its rules: request building (routing, the `wait` and `txn` fields, the deadline),
  rerouting a read after a replica failed it, and reply interpretation (seqs, errors, File
  readers).
- `Exchange`: one request in flight: its frame, its deadline, its resend schedule, and which
  reply answers it.
- `Commands`: the requests themselves. Each returns what the client's `_send` returns: the
  value for the sync client, an awaitable for the asyncio one. Only `_send` and the loops under
  it differ, by `await`.
- `ReplicaWait`: the rule of `wait_replicas`, a request repeated until enough replicas have a
  seq, for both clients' loops (which differ in how they sleep).
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import Any, ClassVar

from pyzdb.api.capture import Syntax
from pyzdb.codec import FILE_MARKER, MAX_REPLY_SIZE
from pyzdb.errors import ConnectionError, Error, ProtocolError, ReplicaBehind
from pyzdb.limits import ROOT_NAME
from pyzdb.net import curve
from pyzdb.net.errorinfo import info_to_exception
from pyzdb.net.messages import MAX_WAIT, Reply, Request, decode_reply, pack
from pyzdb.net.versions import older_server_refusal
from pyzdb.values import File

log = logging.getLogger("pyzdb.client")

#: First resend interval; it doubles after each silent attempt up to `RETRY_MAX`.
RETRY_FIRST = 0.25
RETRY_MAX = 2.0
#: Share of `timeout` a request may wait in the server's lock queue, so that the server's
#: LockTimeout reply reaches the client before the client's own deadline.
QUEUE_SHARE = 0.8
#: Default seconds a request may take. It must exceed the server's default time budget (5 s,
#: `Budget.time`) with room for the round trip, or a runaway query's `LimitExceeded` arrives
#: after the client has given up and reported a dead server instead.
DEFAULT_TIMEOUT = 10.0
#: Requests from this size up may have been dropped by a server with a small --max-message
#: (libzmq drops them with the connection, so the server cannot answer): a timeout says so.
_LARGE_REQUEST = 64 * 1024
#: Longest one attempt of a read at a replica may take (it waits there at most
#: `QUEUE_SHARE` of it for the seq it must see) before the client asks the next replica, and
#: how long a replica that did not answer is skipped.
REPLICA_LIMIT = 2.0
REPLICA_PAUSE = 5.0
#: How a connection reads from replicas (`consistency=`).
CONSISTENCY = ("read-your-writes", "eventual")
#: Ops whose reply seq is a write of this connection (read-your-writes waits for it).
_WRITES = frozenset({"execute", "undo", "redo", "unlock", "commit"})


class Exchange:
    """One request in flight: its frame, its deadline and its resend schedule."""

    __slots__ = (
        "request",
        "frame",
        "uri",
        "limit",
        "deadline",
        "resend_at",
        "_interval",
        "has_files",
        "tried",
    )

    def __init__(self, request: Request, uri: str, limit: float, max_message: int) -> None:
        self.request = request
        frame = pack(request)
        if len(frame) > max_message:
            raise ProtocolError(
                f"the {request.op} request is {len(frame)} bytes, over the limit of "
                f"{max_message} (a server drops requests over its --max-message)"
            )
        self.frame = frame
        self.uri = uri
        self.limit = limit
        now = time.monotonic()
        self.deadline = now + limit
        self._interval = RETRY_FIRST
        self.resend_at = now + RETRY_FIRST
        self.has_files = False
        self.tried = 1  # attempts of this read at replicas so far (`ConnectionCore.reroute`)

    def wait_time(self) -> float:
        """Seconds to wait for a reply before resending (or giving up)."""
        return max(0.0, min(self.resend_at, self.deadline) - time.monotonic())

    def retry(self) -> bool:
        """After a silent wait: False once the deadline has passed, else schedule the next look
        at the connection (a resend only if it dropped: `Channel.lost`)."""
        now = time.monotonic()
        if now >= self.deadline:
            return False
        self._interval = min(self._interval * 2, RETRY_MAX)
        self.resend_at = now + self._interval
        return True

    def accept(self, frames: list[bytes]) -> Reply | None:
        """The reply to this request, or None for a stale one (an earlier id or attempt).

        A reply is one frame, or `[b"", frame]` from a peer that got a REQ-style request.
        """
        if len(frames) == 1:
            frame = frames[0]
        elif len(frames) == 2 and not frames[0]:
            frame = frames[1]
        else:
            log.debug("dropped a reply of %d frames", len(frames))
            return None
        reply = decode_reply(frame, MAX_REPLY_SIZE)
        # Id 0 answers a frame the server could not read an id from: with one request in
        # flight, that frame was this one.
        if reply.id != self.request.id and not (reply.id == 0 and not reply.ok):
            log.debug("dropped a stale reply to request %d", reply.id)
            return None
        self.has_files = FILE_MARKER in frame
        return reply

    def timeout_error(self) -> ConnectionError:
        size = len(self.frame)
        hint = (
            f"the request was {size} bytes, and a server drops a request over its "
            "--max-message unanswered"
            if size > _LARGE_REQUEST
            else "is pyzdb-server running there?"
        )
        return ConnectionError(
            f"no reply from {self.uri} within {self.limit:g} s to the {self.request.op} "
            f"request: {hint}"
        )


def is_seconds(value: object) -> bool:
    """A number of seconds the wire can carry as a wait: a real number in 0..`MAX_WAIT`.

    Checked where the caller gives it (`connect(timeout=...)`, `lock(timeout)`), so that a bad
    value is a `ValueError` naming the argument, not a protocol error on every later request.
    """
    return isinstance(value, (int, float)) and type(value) is not bool and 0 <= value <= MAX_WAIT


class ConnectionCore:
    """A connection's options, state and rules, without sockets: what both clients share.

    The options are those of `pyzdb.connect` and `pyzdb.net.aio.connect`, checked here once.
    """

    def __init__(
        self,
        uri: str,
        timeout: float,
        read_uris: list[str] | None,
        max_message: int,
        consistency: str,
        key: str | os.PathLike[str] | None,
    ) -> None:
        if not (is_seconds(timeout) and timeout > 0):
            raise ValueError(
                f"timeout must be a positive number of seconds up to {MAX_WAIT}, not {timeout!r}"
            )
        if consistency not in CONSISTENCY:
            raise ValueError(f"consistency must be one of {CONSISTENCY}, not {consistency!r}")
        self.consistency = consistency
        #: Newest seq this connection wrote (read-your-writes waits for it), and wrote or read.
        self.written_seq = 0
        self.last_seq = 0
        self._down: dict[str, float] = {}  # replica URI -> until when it is skipped
        self.uri = uri
        self.timeout = float(timeout)
        self.read_uris = list(read_uris or [])
        self.max_message = max_message
        self.credential = curve.credential_for(key)
        self.session = os.urandom(16)
        self._ids = itertools.count(1)
        self._readers = itertools.cycle(self.read_uris) if self.read_uris else None
        #: True while this connection holds the server's lock (written under the caller's lock).
        self.holding = False

    def prepare(
        self,
        op: str,
        *,
        source: str = "",
        syntax: Syntax = "eval",
        params: dict[str, Any] | None = None,
        root: str = ROOT_NAME,
        wait: float | None = None,
        txn: bool | None = None,
        limit: float | None = None,
    ) -> Exchange:
        """Build the exchange for one request: routing, `wait` and `txn`, deadline.

        A query goes to the next read URI unless the lock is held (a transaction reads what it
        wrote). A lock request may wait `wait` seconds in the server's queue, and its deadline
        is that much longer; any other request waits a share of the timeout.
        """
        queue_wait = self.timeout * QUEUE_SHARE if wait is None else wait
        request_wait = queue_wait
        uri = self.uri
        if op == "query" and self._readers is not None and not self.holding:
            uri = self._next_reader()
        min_seq = 0
        if uri != self.uri:
            limit = min(self.timeout, REPLICA_LIMIT) if limit is None else limit
            request_wait = limit * QUEUE_SHARE
            if self.consistency == "read-your-writes":
                min_seq = self.written_seq
        request = Request(
            next(self._ids),
            op,
            source,
            root,
            dict(params) if params else {},
            syntax,
            self.session,
            min_seq,
            request_wait,
            self.holding if txn is None else txn,
        )
        if limit is None:
            limit = self.timeout + (queue_wait if op == "lock" else 0.0)
        return Exchange(request, uri, limit, self.max_message)

    def _next_reader(self) -> str:
        """The next replica in turn that is not being skipped; the primary if all are."""
        assert self._readers is not None
        now = time.monotonic()
        for _ in range(len(self.read_uris)):
            uri = next(self._readers)
            if self._down.get(uri, 0.0) <= now:
                return uri
        return self.uri

    def reroute(self, exchange: Exchange, error: Error) -> Exchange:
        """After a replica failed a read (silent, or behind): the same read elsewhere.

        A silent replica is skipped for `REPLICA_PAUSE` seconds. The next replica in turn gets
        the read, and the primary once every replica has had it; an error from the primary
        (or of any other kind) is raised.
        """
        if exchange.uri == self.uri or not isinstance(error, (ConnectionError, ReplicaBehind)):
            raise error
        if isinstance(error, ConnectionError):
            self._down[exchange.uri] = time.monotonic() + REPLICA_PAUSE
        request = exchange.request
        tried = exchange.tried
        uri = self.uri if tried >= len(self.read_uris) else self._next_reader()
        if uri == self.uri:
            again = dataclasses.replace(
                request, id=next(self._ids), min_seq=0, wait=self.timeout * QUEUE_SHARE, txn=False
            )
            limit = self.timeout
        else:
            again = dataclasses.replace(request, id=next(self._ids))
            limit = min(self.timeout, REPLICA_LIMIT)
        rerouted = Exchange(again, uri, limit, self.max_message)
        rerouted.tried = tried + 1
        return rerouted

    def outcome(self, exchange: Exchange, reply: Reply, reader: Callable[[str], bytes]) -> Any:
        """The value of a reply, or its error raised as the matching exception."""
        if reply.seq > self.last_seq:
            self.last_seq = reply.seq
        if reply.ok and exchange.request.op in _WRITES and reply.seq > self.written_seq:
            self.written_seq = reply.seq
        if not reply.ok:
            assert reply.error is not None
            raise older_server_refusal(reply.error) or info_to_exception(reply.error)
        if exchange.has_files:
            return bind_files(reply.value, reader)
        return reply.value


def bind_files(value: Any, reader: Callable[[str], bytes]) -> Any:
    """Give every File of a result a reader that fetches its blob from the server.

    >>> found = bind_files([File.from_bytes(b"x", "a")], lambda digest: b"x")
    >>> found[0].read()
    b'x'
    """
    if type(value) is File:
        return value.with_reader(reader)
    if type(value) is dict:
        return {bind_files(k, reader): bind_files(v, reader) for k, v in value.items()}
    if type(value) is list:
        return [bind_files(item, reader) for item in value]
    if type(value) in (tuple, set, frozenset):
        return type(value)(bind_files(item, reader) for item in value)
    return value


def applied_by(info: dict[str, Any], seq: int) -> int:
    """How many replicas a primary's `info` shows at or past `seq`.

    >>> applied_by({"replication": {"replicas": [{"applied_seq": 5}, {"applied_seq": 2}]}}, 3)
    1
    """
    replicas = info.get("replication", {}).get("replicas", [])
    return sum(1 for replica in replicas if replica.get("applied_seq", 0) >= seq)


#: Seconds between two looks at the primary's info while `wait_replicas` waits.
REPLICA_POLL = 0.01


class ReplicaWait:
    """`wait_replicas` without the I/O: the sync and the asyncio client each ask for `info`,
    hand the reply to `count`, and sleep `REPLICA_POLL` their own way while it says None."""

    __slots__ = ("seq", "n", "deadline")

    def __init__(self, seq: int, n: int, timeout: float) -> None:
        self.seq = seq
        self.n = n
        self.deadline = time.monotonic() + timeout

    def count(self, info: dict[str, Any]) -> int | None:
        """How many replicas applied `seq` (like Redis WAIT), once `n` did or the timeout
        passed (then fewer); None: ask again.

        >>> ReplicaWait(3, 1, 10.0).count({"replication": {"replicas": [{"applied_seq": 2}]}})
        >>> ReplicaWait(3, 1, 0.0).count({"replication": {"replicas": [{"applied_seq": 2}]}})
        0
        """
        applied = applied_by(info, self.seq)
        if applied >= self.n or time.monotonic() >= self.deadline:
            return applied
        return None


class Commands(abc.ABC):
    """The requests of a remote database, for `Connection` and `AsyncConnection` alike.

    Each returns what `_send` returns: the value for the sync client, the awaitable a caller
    awaits for the asyncio one (`await db.undo()`).
    """

    _core: ConnectionCore
    #: What `watch` returns: an iterator of changes, sync or async.
    _watch_type: ClassVar[Callable[..., Any]]

    @abc.abstractmethod
    def _send(self, op: str, **fields: Any) -> Any:
        """Send one request (`ConnectionCore.prepare`'s fields) and answer its reply's value:
        the I/O, which each client does its own way."""

    @property
    def uri(self) -> str:
        """The primary's URI."""
        return self._core.uri

    @property
    def timeout(self) -> float:
        """Seconds a request may take."""
        return self._core.timeout

    @property
    def last_seq(self) -> int:
        """The newest journal seq this connection wrote or read (0 before any request)."""
        return self._core.last_seq

    def evaluate(
        self,
        write: bool,
        source: str,
        syntax: Syntax,
        params: dict[str, Any],
        root: str = ROOT_NAME,
    ) -> Any:
        """One request of the query model (see `pyzdb.api.proxy.QueryModel.evaluate`): an
        execute if `write`, else a query, which may go to a replica."""
        return self._send(
            "execute" if write else "query", source=source, syntax=syntax, params=params, root=root
        )

    def ping(self) -> Any:
        """One round trip to the primary; raises ConnectionError when it does not answer."""
        return self._send("ping")

    def info(self) -> Any:
        """The server's state in sections, like Redis INFO (see `pyzdb.info`); ``replication``
        shows replicas and their lag."""
        return self._send("info")

    def undo(self) -> Any:
        """Take back the last committed unit (durably); False when there is nothing to undo."""
        return self._send("undo")

    def redo(self) -> Any:
        """Re-apply the last undone unit (durably); False when there is nothing to redo."""
        return self._send("redo")

    def history(self) -> Any:
        """The undo units, oldest first, with their source labels and times."""
        return self._send("history")

    def checkpoint(self) -> Any:
        """Write a checkpoint of the whole tree on the server."""
        return self._send("checkpoint")

    def watch(self, path: Any, since: int | None = None) -> Any:
        """Every change under `path` after `since`, in seq order (see `pyzdb.api.watch`).

        `since=None` yields the current value first (op ``"initial"``). Raises `HistoryLost`
        when the records after `since` are no longer retained.
        """
        return self._watch_type(lambda params: self._send("watch", params=params), path, since)


__all__ = [
    "is_seconds",
    "DEFAULT_TIMEOUT",
    "CONSISTENCY",
    "QUEUE_SHARE",
    "RETRY_FIRST",
    "RETRY_MAX",
    "REPLICA_LIMIT",
    "REPLICA_PAUSE",
    "REPLICA_POLL",
    "ReplicaWait",
    "Commands",
    "ConnectionCore",
    "Exchange",
    "applied_by",
    "bind_files",
]
