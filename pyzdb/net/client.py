"""`pyzdb.connect(uri)`: the remote database, with the interface of `pyzdb.open`.

Theory of operation (one request)
---------------------------------
A `Connection` talks to `pyzdb-server` over a DEALER socket, one request at a time (a lock
makes it safe to share between threads). Each request is a `protocol.Request` with a random
per-connection `session` and an increasing `id`, sent as one frame; the server's ROUTER echoes
the routing envelope it got, so the reply is one frame too. (A REQ socket's `[b"", frame]`
works as well: the server answers it with the delimiter, and the client accepts both shapes.)

Every request has a deadline (`timeout`), so no call ever hangs. Inside it the client resends
only when the *connection* was lost, never because a reply is merely late: a slow request is
evaluated once and its reply comes back on the socket that sent it. Each socket runs ZMTP
heartbeats (libzmq's I/O thread answers them even while the server's Python evaluates), so a
server that died or hangs drops the connection, and a socket monitor reports the drop. While
waiting, the client looks at the monitor after 0.25 s, then 0.5, 1, 2, 2 ... s; after a drop it
closes the socket with linger 0, opens a fresh one and sends the **same** id again (the lazy
pirate of zguide ch. 4, triggered by the connection instead of a timer). The server remembers
recent replies per session, so a resent write runs at most once, and a fresh socket recovers
from a server that restarted, as a REQ socket never did in the original. A request sent while
the server is down waits in the socket until it comes up. A reply whose id is not the one
awaited is a late answer to an earlier attempt or request, and is dropped.

Everything but the socket loop lives in `_Core` and `_Exchange` (request building, the
reserved control values, retry schedule, reply matching, error mapping, File readers), which
`pyzdb.net.aio` shares: only the loops in `Connection._exchange` and `AsyncConnection._exchange`
differ, by `await`.

Every socket's handshake is watched until it succeeds (`pyzdb.net.curve`): with a key (`key=`,
`$PYZDB_KEY`) the socket is a CurveZMQ client, and a key the server refuses, a server key that
does not match, or a server that wants a key when none was given raise AuthenticationError at
once instead of a timeout, and are never resent.

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

from pyzdb.api.proxy import DatabaseAPI
from pyzdb.api.watch import Watch
from pyzdb.errors import ConnectionError, Error, LockTimeout, ProtocolError, ReplicaBehind
from pyzdb.limits import DEFAULT_URI, ROOT_NAME
from pyzdb.net import curve, liveness, protocol
from pyzdb.net.keys import Credential
from pyzdb.values import File

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
#: Longest one attempt of a read at a replica may take (it waits there at most
#: `QUEUE_SHARE` of it for the seq it must see) before the client asks the next replica, and
#: how long a replica that did not answer is skipped.
REPLICA_LIMIT = 2.0
REPLICA_PAUSE = 5.0
#: How a connection reads from replicas (`consistency=`).
CONSISTENCY = ("read-your-writes", "eventual")
#: Ops whose reply seq is a write of this connection (read-your-writes waits for it).
_WRITES = frozenset({"execute", "undo", "redo", "unlock", "commit"})
#: pyzmq's flags as plain ints: its enum flags cost an `enum` call per use on the hot path.
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
_RCVTIMEO = int(zmq.RCVTIMEO)
#: While a CURVE handshake is unfinished, the socket is polled in slices this long (s) between
#: looks at its monitor: a refused key is reported within about this much.
_HANDSHAKE_SLICE = 0.01


class _Exchange:
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

    def __init__(self, request: protocol.Request, uri: str, limit: float, max_message: int) -> None:
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
        self.tried = 1  # attempts of this read at replicas so far (`_Core.reroute`)

    def wait_time(self) -> float:
        """Seconds to wait for a reply before resending (or giving up)."""
        return max(0.0, min(self.resend_at, self.deadline) - time.monotonic())

    def retry(self) -> bool:
        """After a silent wait: False once the deadline has passed, else schedule the next look
        at the connection (a resend only if it dropped: `_Channel.lost`)."""
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


class _Core:
    """A connection's state and rules, without sockets: shared by the sync and asyncio clients."""

    def __init__(
        self,
        uri: str,
        timeout: float,
        read_uris: list[str] | None,
        max_message: int,
        consistency: str = "read-your-writes",
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
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
        syntax: str = "eval",
        params: dict[str, Any] | None = None,
        root: str = ROOT_NAME,
        wait: float | None = None,
        txn: bool | None = None,
        limit: float | None = None,
    ) -> _Exchange:
        """Build the exchange for one request: routing, control values, deadline.

        A query goes to the next read URI unless the lock is held (a transaction reads what it
        wrote). A lock request may wait `wait` seconds in the server's queue, and its deadline
        is that much longer; any other request waits a share of the timeout.
        """
        params = dict(params) if params else {}
        if CONTROL_PARAM in params:
            raise ValueError(f"the parameter name {CONTROL_PARAM!r} is reserved by pyzdb")
        queue_wait = self.timeout * QUEUE_SHARE if wait is None else wait
        params[CONTROL_PARAM] = {"wait": queue_wait, "txn": self.holding if txn is None else txn}
        uri = self.uri
        if op == "query" and self._readers is not None and not self.holding:
            uri = self._next_reader()
        min_seq = 0
        if uri != self.uri:
            limit = min(self.timeout, REPLICA_LIMIT) if limit is None else limit
            params[CONTROL_PARAM]["wait"] = limit * QUEUE_SHARE
            if self.consistency == "read-your-writes":
                min_seq = self.written_seq
        request = protocol.Request(
            next(self._ids), op, source, root, params, syntax, self.session, min_seq
        )
        if limit is None:
            limit = self.timeout + (queue_wait if op == "lock" else 0.0)
        return _Exchange(request, uri, limit, self.max_message)

    def _next_reader(self) -> str:
        """The next replica in turn that is not being skipped; the primary if all are."""
        now = time.monotonic()
        for _ in range(len(self.read_uris)):
            uri = next(self._readers)  # type: ignore[arg-type]
            if self._down.get(uri, 0.0) <= now:
                return uri
        return self.uri

    def reroute(self, exchange: _Exchange, error: Error) -> _Exchange:
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
        params = dict(request.params)
        if uri == self.uri:
            params[CONTROL_PARAM] = {"wait": self.timeout * QUEUE_SHARE, "txn": False}
        again = protocol.Request(
            next(self._ids),
            request.op,
            request.source,
            request.root,
            params,
            request.syntax,
            request.session,
            request.min_seq if uri != self.uri else 0,
        )
        limit = self.timeout if uri == self.uri else min(self.timeout, REPLICA_LIMIT)
        rerouted = _Exchange(again, uri, limit, self.max_message)
        rerouted.tried = tried + 1
        return rerouted

    def outcome(
        self, exchange: _Exchange, reply: protocol.Reply, reader: Callable[[str], bytes]
    ) -> Any:
        """The value of a reply, or its error raised as the matching exception."""
        if reply.seq > self.last_seq:
            self.last_seq = reply.seq
        if reply.ok and exchange.request.op in _WRITES and reply.seq > self.written_seq:
            self.written_seq = reply.seq
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

    With a `zmq.asyncio.Context` its sockets are asyncio sockets: `pyzdb.net.aio` uses it as is.
    Its one monitor (`liveness.Watch`) tells a dropped connection (resend) and, until a
    handshake succeeded, a refused key (`curve`: AuthenticationError at once, never retried).
    """

    def __init__(
        self, context: zmq.Context, uri: str, credential: Credential | None = None
    ) -> None:
        self.context = context
        self.uri = uri
        self.credential = credential
        self.socket, self.watch = self._open()
        self._handshaken = False  # until then, receiving also watches the handshake
        self._reconnect = False  # a handshake with this URI succeeded before (`curve`)
        self._strikes = 0  # handshakes failed "with no detail" in a row (`curve.is_refusal`)
        self._judged = False  # this socket's failed handshake was counted
        self._rcvtimeo = -1  # the socket's RCVTIMEO, ms (-1: wait forever, libzmq's default)

    def _open(self) -> tuple[zmq.Socket, liveness.Watch]:
        socket = self.context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        liveness.configure(socket)
        curve.configure(socket, self.credential)
        watch = liveness.Watch(socket)
        try:
            socket.connect(self.uri)
        except zmq.ZMQError as exc:
            watch.close()
            raise ConnectionError(f"cannot connect to {self.uri!r}: {exc}") from None
        return socket, watch

    def lost(self) -> bool:
        """The connection dropped since the request was sent: resend it (see `liveness`)."""
        return self.watch.dropped()

    def reset(self) -> None:
        self.close()
        self.socket, self.watch = self._open()
        self._handshaken = self._judged = False
        self._rcvtimeo = -1

    def receive(self, timeout: float) -> list[bytes] | None:
        """The next message's frames, or None after `timeout` seconds without one.

        For a sync socket: a blocking receive bounded by RCVTIMEO, as a REQ socket waits. It
        costs half the system calls of `Socket.poll` + `recv_multipart` (a poll makes libzmq
        check the socket before and after waiting), and no Poller object or enum arithmetic.
        As with `Socket.poll`, the wait is in whole milliseconds, rounded down.
        """
        if not self._handshaken:
            return self._receive_watching(timeout)
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

    def send(self, frame: bytes) -> None:
        """Send one request frame without ever blocking.

        A DEALER queues what it sends while it connects, so this succeeds at once, except on a
        socket whose handshake failed: libzmq then dropped its only peer and does not reconnect
        (`curve.configure`), and a blocking send would wait forever. That case raises what the
        monitor reported (AuthenticationError).
        """
        self.watch.arm()
        try:
            self.socket.send(frame, _NOBLOCK)
        except zmq.Again:
            self._refused()
            self.socket.send(frame, _NOBLOCK)  # a fresh socket queues it

    async def send_async(self, frame: bytes) -> None:
        """`send` for a `zmq.asyncio` socket."""
        self.watch.arm()
        try:
            await self.socket.send(frame, _NOBLOCK)
        except zmq.Again:
            self._refused()
            await self.socket.send(frame, _NOBLOCK)

    def _refused(self) -> None:
        """The socket has no peer (its handshake failed): replace it, and raise
        AuthenticationError if that failure means the key was refused."""
        kind = self.watch.handshake_failure(wait=1.0)
        refused = kind is None or self._refusal(kind)
        self.reset()
        if refused:
            raise curve.refusal(kind, self.credential, self.uri)

    def _refusal(self, kind: int) -> bool:
        """Count this socket's failed handshake once; does it mean a refused key?"""
        if not self._judged:
            self._judged = True
            self._strikes += 1
        return curve.is_refusal(kind, self._reconnect, self._strikes)

    def _handshake_done(self) -> bool:
        """True once a handshake succeeded; AuthenticationError (socket replaced) if the key
        was refused; False while none finished (or one failed as a dropped connection does:
        the request's resend schedule handles it)."""
        state = self.watch.handshake()
        if state is True:
            self._handshaken = self._reconnect = True
            self._strikes = 0
        elif state is not None and self._refusal(state):
            self.reset()
            raise curve.refusal(state, self.credential, self.uri)
        return self._handshaken

    def _receive_watching(self, timeout: float) -> list[bytes] | None:
        """`receive` while the handshake is unfinished: a refused key raises
        AuthenticationError at once (and the socket is replaced), not after the timeout."""
        deadline = time.monotonic() + timeout
        while not self._handshake_done():
            if self.socket.poll(_HANDSHAKE_SLICE * 1000):
                self._handshaken = True  # a reply came: the handshake succeeded
                break
            if time.monotonic() >= deadline:
                return None
        return self.receive(max(0.0, deadline - time.monotonic()))

    async def poll_async(self, timeout: float) -> bool:
        """For a `zmq.asyncio` socket: True once a message waits, False after `timeout`;
        a refused key raises AuthenticationError at once, as in `receive`."""
        deadline = time.monotonic() + timeout
        while not self._handshake_done():
            if await self.socket.poll(_HANDSHAKE_SLICE * 1000, zmq.POLLIN):
                self._handshaken = True  # a reply came: the handshake succeeded
                return True
            if time.monotonic() >= deadline:
                return False
        return bool(
            await self.socket.poll(max(0.0, deadline - time.monotonic()) * 1000, zmq.POLLIN)
        )

    def close(self) -> None:
        self.watch.close()  # closes the socket too, after switching its monitor off


class Connection(DatabaseAPI):
    """A remote pyzdb database; see `connect`. Safe to share between threads."""

    def __init__(
        self,
        uri: str,
        timeout: float = DEFAULT_TIMEOUT,
        read_uris: list[str] | None = None,
        *,
        max_message: int = protocol.MAX_REQUEST_SIZE,
        consistency: str = "read-your-writes",
        key: str | os.PathLike[str] | None = None,
    ) -> None:
        self._core = _Core(uri, timeout, read_uris, max_message, consistency)
        self._credential = curve.credential_for(key)
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
        self, write: bool, source: str, syntax: str, params: dict[str, Any], root: str = ROOT_NAME
    ) -> Any:
        return self._send(
            "execute" if write else "query", source=source, syntax=syntax, params=params, root=root
        )

    def _send(self, op: str, **fields: Any) -> Any:
        # `_turn` spelled out: this is every request's path, and a generator-based context
        # manager costs more than the rest of the bookkeeping here.
        if not self._mutex.acquire(timeout=self._core.timeout):
            raise self._busy()
        try:
            if self._closed:
                raise Error("the connection is closed")
            exchange = self._core.prepare(op, **fields)
            while True:
                try:
                    return self._exchange(exchange)
                except (ConnectionError, ReplicaBehind) as exc:
                    exchange = self._core.reroute(exchange, exc)
        finally:
            self._mutex.release()

    def _busy(self) -> LockTimeout:
        return LockTimeout(
            f"another thread of this connection kept it (a transaction or a "
            f"long request) for more than {self._core.timeout:g} s"
        )

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
            channel = self._channels[uri] = _Channel(self._context, uri, self._credential)
        return channel

    def _exchange(self, exchange: _Exchange, channel: _Channel | None = None) -> Any:
        """Send, wait, resend on a fresh socket if the connection dropped, until a reply or the
        deadline (lazy pirate, triggered by the connection: see `liveness`)."""
        channel = channel or self._channel(exchange.uri)
        channel.send(exchange.frame)
        while True:
            frames = channel.receive(exchange.wait_time())
            if frames is not None:
                reply = exchange.accept(frames)
                if reply is not None:
                    return self._core.outcome(exchange, reply, self._read_blob)
            elif exchange.retry():
                if channel.lost():
                    channel.reset()
                    channel.send(exchange.frame)
            else:
                channel.reset()  # drop the unanswered request with the socket
                raise exchange.timeout_error()

    def _read_blob(self, digest: str) -> bytes:
        return self._send("blob", source=digest)

    def ping(self) -> None:
        """One round trip to the primary; raises ConnectionError when it does not answer."""
        self._send("ping")

    # -- the stream: info, the change feed, replicas ---------------------------------------------

    @property
    def last_seq(self) -> int:
        """The newest journal seq this connection wrote or read (0 before any request)."""
        return self._core.last_seq

    def watch(self, path: Any, since: int | None = None) -> Watch:
        """Every change under `path` after `since`, in seq order (see `pyzdb.api.watch`).

        `since=None` yields the current value first (op ``"initial"``). Raises `HistoryLost`
        when the records after `since` are no longer retained.
        """
        return Watch(lambda params: self._send("watch", params=params), path, since)

    def wait_replicas(self, n: int, timeout: float) -> int:
        """Wait until `n` replicas applied this connection's last write, or `timeout` passes.

        Returns how many had (like Redis WAIT), which is less than `n` after a timeout.
        """
        return wait_replicas(self._send, self._core.written_seq, n, timeout, time.sleep)

    # -- undo, history, checkpoints ------------------------------------------------------------

    def info(self) -> dict[str, dict[str, Any]]:
        """The server's state in sections, like Redis INFO (see `pyzdb.info`); ``replication``
        shows replicas and their lag."""
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
            raise LockTimeout(
                f"another thread of this connection held its lock for more than {wait:g} s"
            )
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
        threading.Thread(
            target=self._beat,
            args=(self._heartbeat, lease / 3),
            daemon=True,
            name="pyzdb-heartbeat",
        ).start()

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
        channel = _Channel(self._context, self._core.uri, self._credential)
        try:
            while not stop.wait(interval):
                try:
                    self._exchange(self._core.prepare("ping", txn=False, limit=interval), channel)
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


def applied_by(info: dict[str, Any], seq: int) -> int:
    """How many replicas a primary's `info` shows at or past `seq`."""
    replicas = info.get("replication", {}).get("replicas", [])
    return sum(1 for replica in replicas if replica.get("applied_seq", 0) >= seq)


def wait_replicas(
    send: Callable[[str], Any], seq: int, n: int, timeout: float, sleep: Callable[[float], Any]
) -> int:
    """`Connection.wait_replicas` for any sender: poll the primary's info until n replicas
    applied `seq` or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while True:
        count = applied_by(send("info"), seq)
        if count >= n or time.monotonic() >= deadline:
            return count
        sleep(0.01)


def connect(
    uri: str = DEFAULT_URI,
    timeout: float = DEFAULT_TIMEOUT,
    read_uris: list[str] | None = None,
    consistency: str = "read-your-writes",
    key: str | os.PathLike[str] | None = None,
) -> Connection:
    """Connect to a `pyzdb-server`; reads (queries) go round-robin to `read_uris` if given.

    With replicas, a read after a write of this connection waits at the replica until it has
    applied that write (`consistency="read-your-writes"`, the default); `"eventual"` reads
    whatever the replica has. A replica that is silent or behind is skipped for the primary.
    Nothing travels until the first request, so a server that is down is reported by that
    request: `pyzdb.ConnectionError` after `timeout` seconds. `key` (else `$PYZDB_KEY`) names
    a credential file from `pyzdb-keys add` for a server started with `--keys`; a key the
    server refuses raises `pyzdb.AuthenticationError` at once.
    """
    return Connection(uri, timeout, read_uris, consistency=consistency, key=key)


__all__ = ["connect", "Connection", "CONTROL_PARAM"]
