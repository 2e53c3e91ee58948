"""`pyzdb.connect(uri)`: the remote database, with the interface of `pyzdb.open`.

Theory of operation (one request)
---------------------------------
A `Connection` talks to `pyzdb-server` over a DEALER socket, one request at a time (a lock
makes it safe to share between threads). Each request is a `messages.Request` with a random
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

Everything but the socket loop lives in `pyzdb.net.commands` (options, request building, the
retry schedule, reply matching, error mapping, File readers, and the commands themselves), which
`pyzdb.net.aio` shares: only the loops in `Connection._exchange` and `AsyncConnection._exchange`
differ, by `await`. The socket itself is a `pyzdb.net.channel.Channel`.

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
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import zmq

from pyzdb.api.proxy import DatabaseAPI
from pyzdb.api.watch import Watch
from pyzdb.codec import MAX_REQUEST_SIZE
from pyzdb.errors import ConnectionError, Error, LockTimeout, ReplicaBehind
from pyzdb.limits import DEFAULT_URI
from pyzdb.net.channel import Channel, Channels
from pyzdb.net.commands import (
    DEFAULT_TIMEOUT,
    REPLICA_POLL,
    Commands,
    ConnectionCore,
    Exchange,
    ReplicaWait,
    is_seconds,
)
from pyzdb.net.messages import MAX_WAIT

log = logging.getLogger("pyzdb.client")


class Connection(Commands, DatabaseAPI):
    """A remote pyzdb database; see `connect`. Safe to share between threads."""

    _watch_type = Watch

    def __init__(
        self,
        uri: str,
        timeout: float = DEFAULT_TIMEOUT,
        read_uris: list[str] | None = None,
        *,
        max_message: int = MAX_REQUEST_SIZE,
        consistency: str = "read-your-writes",
        key: str | os.PathLike[str] | None = None,
    ) -> None:
        self._core = ConnectionCore(uri, timeout, read_uris, max_message, consistency, key)
        self._channels = Channels(zmq.Context.instance(), self._core.credential)
        self._mutex = threading.RLock()  # one request at a time; held across a lock()
        self._heartbeat: threading.Event | None = None
        self._closed = False
        self._channels.get(uri)  # connect now: a bad URI fails here, not at the first request

    def __repr__(self) -> str:
        return f"<pyzdb.Connection {self._core.uri}>"

    # -- requests ------------------------------------------------------------------------------

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

    def _exchange(self, exchange: Exchange, channel: Channel | None = None) -> Any:
        """Send, wait, resend on a fresh socket if the connection dropped, until a reply or the
        deadline (lazy pirate, triggered by the connection: see `liveness`)."""
        channel = channel or self._channels.get(exchange.uri)
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
        return cast(bytes, self._send("blob", source=digest))

    def wait_replicas(self, n: int, timeout: float) -> int:
        """Wait until `n` replicas applied this connection's last write, or `timeout` passes.

        Returns how many had (like Redis WAIT), which is less than `n` after a timeout.
        """
        waiting = ReplicaWait(self._core.written_seq, n, timeout)
        while (count := waiting.count(self._send("info"))) is None:
            time.sleep(REPLICA_POLL)
        return count

    # -- the lock --------------------------------------------------------------------------------

    def lock(self, timeout: float | None = None) -> None:
        """Exclusive access until `unlock()`; the requests in between form one unit.

        Waits in the server's queue up to `timeout` seconds (default: the connection's
        timeout) and raises LockTimeout after that. The lock is a lease the server takes back
        (rolling the transaction back) if this client goes silent; a heartbeat thread keeps it.
        """
        wait = self._core.timeout if timeout is None else timeout
        if not is_seconds(wait):
            raise ValueError(f"timeout must be None or seconds in 0..{MAX_WAIT}, not {timeout!r}")
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
        channel = self._channels.fresh(self._core.uri)
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
            self._channels.close()
        finally:
            if acquired:
                self._mutex.release()


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


__all__ = ["connect", "Connection"]
