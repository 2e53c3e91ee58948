"""`pyzdb.connect(uri)`: the remote database, with the interface of `pyzdb.open`.

Theory of operation (one request)
---------------------------------
A `Connection` talks to `pyzdb-server` over a DEALER socket, one request at a time (a lock
makes it safe to share between threads). Each request is a `protocol.Request` with a random
per-connection `session` and an increasing `id`, sent as one frame; the server's ROUTER echoes
the routing envelope it got, so the reply is one frame too. (A REQ socket's `[b"", frame]`
works as well: the server answers it with the delimiter, and the client accepts both shapes.)

Every request has a deadline (`timeout`), so no call ever hangs. Inside it the client resends
in the *lazy pirate* way (zguide ch. 4): when a reply is late it closes the socket with linger
0, opens a fresh one and sends the **same** id again, after 0.25 s, then 0.5, 1, 2, 2 ... s.
The server remembers recent replies per session, so a resent write runs at most once, and a
fresh socket recovers from a server that restarted, as a REQ socket never did in the
original. A reply whose id is not the one awaited is a late answer to an earlier attempt or
request, and is dropped.

Everything but the socket loop lives in `_Core` and `_Exchange` (request building, the
reserved control values, retry schedule, reply matching, error mapping, File readers), which
`pyzdb.aio` shares: only the loops in `Connection._exchange` and `AsyncConnection._exchange`
differ, by `await`.

The lock (`lock()`/`transaction()`) is a server-side lease: while it is held a daemon thread
pings every lease/3 from its own socket, so a holder that is idle or busy elsewhere keeps it,
and a holder that dies loses it after one lease (its transaction rolled back).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from . import protocol
from .errors import ConnectionError, Error, LockTimeout, ProtocolError
from .proxy import DatabaseAPI
from .values import File

log = logging.getLogger("pyzdb.client")

#: Request parameter carrying the client's control values, which the server removes before the
#: query sees its parameters: `wait` (seconds this request may wait in the lock queue) and
#: `txn` (it belongs to the lock this session holds: refuse it if that lock is gone). The
#: protocol has no fields for them yet; a query parameter may not use this name.
CONTROL_PARAM = "pyzdb_control"
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
#: An extension marker with an empty payload, as the codec writes a `pyzdb.File`: only replies
#: holding these bytes are walked to attach blob readers (a bytes value may match: harmless).
_FILE_MARK = b"\xc7\x00\x05"
#: pyzmq's flags as plain ints: its enum flags cost an `enum` call per use on the hot path.
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
_RCVTIMEO = int(zmq.RCVTIMEO)


class _Exchange:
    """One request in flight: its frame, its deadline and its resend schedule."""

    __slots__ = ("request", "frame", "uri", "limit", "deadline", "resend_at", "_interval",
                 "has_files")

    def __init__(self, request: protocol.Request, uri: str, limit: float,
                 max_message: int) -> None:
        self.request = request
        frame = protocol.pack(request)
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

    def wait_time(self) -> float:
        """Seconds to wait for a reply before resending (or giving up)."""
        return max(0.0, min(self.resend_at, self.deadline) - time.monotonic())

    def retry(self) -> bool:
        """After a silent wait: False once the deadline has passed, else schedule a resend."""
        now = time.monotonic()
        if now >= self.deadline:
            return False
        self._interval = min(self._interval * 2, RETRY_MAX)
        self.resend_at = now + self._interval
        return True

    def accept(self, frames: list[bytes]) -> protocol.Reply | None:
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
        reply = protocol.decode_reply(frame, protocol.MAX_REPLY_SIZE)
        # Id 0 answers a frame the server could not read an id from: with one request in
        # flight, that frame was this one.
        if reply.id != self.request.id and not (reply.id == 0 and not reply.ok):
            log.debug("dropped a stale reply to request %d", reply.id)
            return None
        self.has_files = _FILE_MARK in frame
        return reply

    def timeout_error(self) -> ConnectionError:
        size = len(self.frame)
        hint = (f"the request was {size} bytes, and a server drops a request over its "
                "--max-message unanswered" if size > _LARGE_REQUEST
                else "is pyzdb-server running there?")
        return ConnectionError(
            f"no reply from {self.uri} within {self.limit:g} s to the {self.request.op} "
            f"request: {hint}"
        )


class _Core:
    """A connection's state and rules, without sockets: shared by the sync and asyncio clients."""

    def __init__(self, uri: str, timeout: float, read_uris: list[str] | None,
                 max_message: int) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.uri = uri
        self.timeout = float(timeout)
        self.read_uris = list(read_uris or [])
        self.max_message = max_message
        self.session = os.urandom(16)
        self._ids = itertools.count(1)
        self._readers = itertools.cycle(self.read_uris) if self.read_uris else None
        #: True while this connection holds the server's lock (written under the caller's lock).
        self.holding = False

    def prepare(self, op: str, *, source: str = "", syntax: str = "eval",
                params: dict[str, Any] | None = None, root: str = "db",
                wait: float | None = None, txn: bool | None = None,
                limit: float | None = None) -> _Exchange:
        """Build the exchange for one request: routing, control values, deadline.

        A query goes to the next read URI unless the lock is held (a transaction reads what it
        wrote). A lock request may wait `wait` seconds in the server's queue, and its deadline
        is that much longer; any other request waits a share of the timeout.
        """
        params = dict(params) if params else {}
        if CONTROL_PARAM in params:
            raise ValueError(f"the parameter name {CONTROL_PARAM!r} is reserved by pyzdb")
        queue_wait = self.timeout * QUEUE_SHARE if wait is None else wait
        params[CONTROL_PARAM] = {"wait": queue_wait,
                                 "txn": self.holding if txn is None else txn}
        request = protocol.Request(next(self._ids), op, source, root, params, syntax,
                                   self.session)
        uri = self.uri
        if op == "query" and self._readers is not None and not self.holding:
            uri = next(self._readers)
        if limit is None:
            limit = self.timeout + (queue_wait if op == "lock" else 0.0)
        return _Exchange(request, uri, limit, self.max_message)

    @staticmethod
    def outcome(exchange: _Exchange, reply: protocol.Reply,
                reader: Callable[[str], bytes]) -> Any:
        """The value of a reply, or its error raised as the matching exception."""
        if not reply.ok:
            assert reply.error is not None
            raise protocol.info_to_exception(reply.error)
        if exchange.has_files:
            return _bind_files(reply.value, reader)
        return reply.value


def _bind_files(value: Any, reader: Callable[[str], bytes]) -> Any:
    """Give every File of a result a reader that fetches its blob from the server."""
    if type(value) is File:
        return value.with_reader(reader)
    if type(value) is dict:
        return {_bind_files(k, reader): _bind_files(v, reader) for k, v in value.items()}
    if type(value) is list:
        return [_bind_files(item, reader) for item in value]
    if type(value) in (tuple, set, frozenset):
        return type(value)(_bind_files(item, reader) for item in value)
    return value


class _Channel:
    """A DEALER socket to one URI that can be thrown away and reopened (lazy pirate).

    With a `zmq.asyncio.Context` its sockets are asyncio sockets: `pyzdb.aio` uses it as is.
    """

    def __init__(self, context: zmq.Context, uri: str) -> None:
        self.context = context
        self.uri = uri
        self.socket = self._open()
        self._rcvtimeo = -1  # the socket's RCVTIMEO, ms (-1: wait forever, libzmq's default)

    def _open(self) -> zmq.Socket:
        socket = self.context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        try:
            socket.connect(self.uri)
        except zmq.ZMQError as exc:
            socket.close()
            raise ConnectionError(f"cannot connect to {self.uri!r}: {exc}") from None
        return socket

    def reset(self) -> None:
        self.socket.close(linger=0)
        self.socket = self._open()
        self._rcvtimeo = -1

    def receive(self, timeout: float) -> list[bytes] | None:
        """The next message's frames, or None after `timeout` seconds without one.

        For a sync socket: a blocking receive bounded by RCVTIMEO, as a REQ socket waits. It
        costs half the system calls of `Socket.poll` + `recv_multipart` (a poll makes libzmq
        check the socket before and after waiting), and no Poller object or enum arithmetic.
        As with `Socket.poll`, the wait is in whole milliseconds, rounded down.
        """
        socket = self.socket
        wait = int(timeout * 1000)
        if wait != self._rcvtimeo:
            socket.setsockopt(_RCVTIMEO, wait)
            self._rcvtimeo = wait
        try:
            frames = [socket.recv()]
        except zmq.Again:
            return None
        while socket.getsockopt(_RCVMORE):
            frames.append(socket.recv(_NOBLOCK))
        return frames

    def close(self) -> None:
        self.socket.close(linger=0)


class Connection(DatabaseAPI):
    """A remote pyzdb database; see `connect`. Safe to share between threads."""

    def __init__(self, uri: str, timeout: float = DEFAULT_TIMEOUT,
                 read_uris: list[str] | None = None, *,
                 max_message: int = protocol.MAX_REQUEST_SIZE) -> None:
        self._core = _Core(uri, timeout, read_uris, max_message)
        self._context = zmq.Context.instance()
        self._channels: dict[str, _Channel] = {}
        self._mutex = threading.RLock()  # one request at a time; held across a lock()
        self._heartbeat: threading.Event | None = None
        self._closed = False
        self._channel(uri)  # connect now: a bad URI fails here, not at the first request

    @property
    def uri(self) -> str:
        return self._core.uri

    @property
    def timeout(self) -> float:
        return self._core.timeout

    def __repr__(self) -> str:
        return f"<pyzdb.Connection {self._core.uri}>"

    # -- requests ------------------------------------------------------------------------------

    def _call(
        self, write: bool, source: str, syntax: str, params: dict[str, Any], root: str = "db"
    ) -> Any:
        return self._send("execute" if write else "query", source=source, syntax=syntax,
                          params=params, root=root)

    def _send(self, op: str, **fields: Any) -> Any:
        # `_turn` spelled out: this is every request's path, and a generator-based context
        # manager costs more than the rest of the bookkeeping here.
        if not self._mutex.acquire(timeout=self._core.timeout):
            raise self._busy()
        try:
            if self._closed:
                raise Error("the connection is closed")
            return self._exchange(self._core.prepare(op, **fields))
        finally:
            self._mutex.release()

    def _busy(self) -> LockTimeout:
        return LockTimeout(f"another thread of this connection kept it (a transaction or a "
                           f"long request) for more than {self._core.timeout:g} s")

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """This thread's turn at the socket; another thread's transaction makes it wait."""
        if not self._mutex.acquire(timeout=self._core.timeout):
            raise self._busy()
        try:
            if self._closed:
                raise Error("the connection is closed")
            yield
        finally:
            self._mutex.release()

    def _channel(self, uri: str) -> _Channel:
        channel = self._channels.get(uri)
        if channel is None:
            channel = self._channels[uri] = _Channel(self._context, uri)
        return channel

    def _exchange(self, exchange: _Exchange, channel: _Channel | None = None) -> Any:
        """Send, wait, resend on a fresh socket until a reply or the deadline (lazy pirate)."""
        channel = channel or self._channel(exchange.uri)
        channel.socket.send(exchange.frame)
        while True:
            frames = channel.receive(exchange.wait_time())
            if frames is not None:
                reply = exchange.accept(frames)
                if reply is not None:
                    return self._core.outcome(exchange, reply, self._read_blob)
            elif exchange.retry():
                channel.reset()
                channel.socket.send(exchange.frame)
            else:
                channel.reset()  # drop the unanswered request with the socket
                raise exchange.timeout_error()

    def _read_blob(self, digest: str) -> bytes:
        return self._send("blob", source=digest)

    def ping(self) -> None:
        """One round trip to the primary; raises ConnectionError when it does not answer."""
        self._send("ping")

    # -- undo, history, checkpoints ------------------------------------------------------------

    def info(self) -> dict[str, dict[str, Any]]:
        """The server's state in sections, like Redis INFO (see `pyzdb.info`)."""
        return self._send("info")

    def undo(self) -> bool:
        """Take back the last committed unit (durably); False when there is nothing to undo."""
        return self._send("undo")

    def redo(self) -> bool:
        """Re-apply the last undone unit (durably); False when there is nothing to redo."""
        return self._send("redo")

    def history(self) -> list[dict[str, Any]]:
        """The undo units, oldest first, with their source labels and times."""
        return self._send("history")

    def checkpoint(self) -> None:
        self._send("checkpoint")

    # -- the lock --------------------------------------------------------------------------------

    def lock(self, timeout: float | None = None) -> None:
        """Exclusive access until `unlock()`; the requests in between form one unit.

        Waits in the server's queue up to `timeout` seconds (default: the connection's
        timeout) and raises LockTimeout after that. The lock is a lease the server takes back
        (rolling the transaction back) if this client goes silent; a heartbeat thread keeps it.
        """
        wait = self._core.timeout if timeout is None else timeout
        if not wait >= 0:
            raise ValueError(f"timeout must be None or seconds >= 0, not {timeout!r}")
        if not self._mutex.acquire(timeout=wait):
            raise LockTimeout(f"another thread of this connection held its lock for more than "
                              f"{wait:g} s")
        try:
            if self._closed:
                raise Error("the connection is closed")
            if self._core.holding:
                raise Error("the database is already locked by this connection")
            lease = self._exchange(self._core.prepare("lock", wait=wait))
        except BaseException:
            self._mutex.release()
            raise
        self._core.holding = True
        self._heartbeat = threading.Event()
        threading.Thread(target=self._beat, args=(self._heartbeat, lease / 3), daemon=True,
                         name="pyzdb-heartbeat").start()

    def unlock(self) -> None:
        """Commit the locked requests as one unit and let others in.

        Raises LockTimeout if the lease was lost meanwhile: then nothing was committed.
        """
        self._release("unlock")

    def rollback(self) -> None:
        """Drop the locked requests and let others in."""
        self._release("rollback")

    def _release(self, op: str) -> None:
        with self._turn():
            if not self._core.holding:
                raise Error("the database is not locked")
            try:
                self._exchange(self._core.prepare(op))
            except LockTimeout:
                if op != "rollback":  # a lost lease already rolled back: what was asked
                    raise
            finally:
                self._core.holding = False
                if self._heartbeat is not None:
                    self._heartbeat.set()
                    self._heartbeat = None
                self._mutex.release()  # the hold taken by lock()

    def _beat(self, stop: threading.Event, interval: float) -> None:
        """The heartbeat thread: ping on its own socket (sockets are not thread-safe)."""
        channel = _Channel(self._context, self._core.uri)
        try:
            while not stop.wait(interval):
                try:
                    self._exchange(self._core.prepare("ping", txn=False, limit=interval),
                                   channel)
                except Error as exc:
                    log.debug("heartbeat ping failed: %s", exc)
        finally:
            channel.close()

    def close(self) -> None:
        """Roll back a transaction still open, then close the sockets (linger 0)."""
        if self._closed:
            return
        with contextlib.suppress(Error):
            if self._core.holding:
                self._release("rollback")
        # Another thread still mid-request after a timeout's wait loses its socket: closing
        # must not hang either.
        acquired = self._mutex.acquire(timeout=self._core.timeout)
        try:
            self._closed = True
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
        finally:
            if acquired:
                self._mutex.release()


def connect(uri: str = "tcp://127.0.0.1:5559", timeout: float = DEFAULT_TIMEOUT,
            read_uris: list[str] | None = None) -> Connection:
    """Connect to a `pyzdb-server`; reads (queries) go round-robin to `read_uris` if given.

    Nothing travels until the first request, so a server that is down is reported by that
    request: `pyzdb.ConnectionError` after `timeout` seconds.
    """
    return Connection(uri, timeout, read_uris)


__all__ = ["connect", "Connection", "CONTROL_PARAM"]
