"""`pyzdb-server`: one process, one ZeroMQ ROUTER socket, one engine, requests one at a time.

Theory of operation (one turn of the loop)
------------------------------------------
1. Wait for messages, or for the next lease or queue deadline. SIGINT/SIGTERM only set a
   flag, and their wakeup fd (`signal.set_wakeup_fd`) ends the wait at once.
2. Expire: a lock holder silent past its lease is rolled back and loses the lock; a queued
   request past its wait limit gets a `LockTimeout` reply.
3. Drain the messages that are ready, up to `BATCH_LIMIT`, and handle each in arrival order.
   A repeat of a `(session, id)` already answered gets the remembered reply (at-most-once:
   the client's lazy-pirate retry resends the same id). While one session holds the lock,
   the requests of every other session wait in a FIFO queue (exclusive access, as in the
   original). Anything else runs on the engine now, writes with `sync=False`.
4. Each reply joins the outbox with the journal seq it may reflect: the newest record when it
   was made, for queries too (they may read a write of this very batch). Replies leave in
   order, each once that seq is durable (`Journal.durable_seq`): no reply leaves before the
   writes it may reflect are on disk, replies to queries included, so nobody sees data a crash
   could take back. Under `--fsync always` one fdatasync covers every write so far (group
   commit). On a slow disk (`OVERLAP_FSYNC`) a sync thread (`_Syncer`) runs it while the loop
   goes on with the next messages, and wakes the loop through a pipe in its poll set when it is
   done; on a fast disk the loop runs it itself at the end of the turn, which costs less than
   the hand-off. Under `everysec` and `no` the policy decides, and a turn's replies leave at
   its end.

The engine runs in the main thread because the sandbox's wall-time budget uses SIGALRM, which
Python delivers there only. pyzmq retries a poll interrupted by a signal (EINTR) after running
the Python handler, so a handler must not raise there: ours set a flag, and the wakeup fd makes
the poll return (a SIGALRM that lands while idle just wakes it once).

Nothing a client sends is unpickled: frames are decoded by `pyzdb.net.protocol` alone, and every
bad frame gets an error reply, is logged (throttled), and changes nothing. The one exception
is a frame over `--max-message`: libzmq (MAXMSGSIZE) drops it with the connection before
Python sees it, so nobody can answer; the client refuses such requests itself, and one that
got through anyway ends in the client's ConnectionError, which names the request's size.

The reply cache lives in memory, and is seeded at start from the `(session, request id,
result)` journalled with each committed write (`storage.history`): a write whose reply was lost
*and* whose server then crashed is answered from the journal when retried, not run again.
Change feeds, replica streams and `info` are `pyzdb.server.feed.Hub`'s; following a primary is
`pyzdb.server.replica.Follower`'s (`--replica-of`).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import functools
import ipaddress
import logging
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import zmq
from zmq import zmq_poll

from pyzdb.engine import Engine, EngineConfig
from pyzdb.errors import (
    AuthenticationError,
    Error,
    LimitExceeded,
    LockTimeout,
    ProtocolError,
    SecurityError,
)
from pyzdb.info import RequestStats, engine_sections
from pyzdb.limits import DEFAULT_URI
from pyzdb.net import protocol
from pyzdb.net.client import CONTROL_PARAM
from pyzdb.net.curve import credential_for
from pyzdb.net.protocol import Encoded, Reply, Request
from pyzdb.sandbox import Budget, release_leftovers
from pyzdb.server import feed
from pyzdb.server.auth import ServerAuth
from pyzdb.server.fairness import FairReplyCache as ReplyCache
from pyzdb.server.fairness import QueueShares
from pyzdb.server.options import default_max_memory, parse_size
from pyzdb.server.redact import Redactor
from pyzdb.server.replica import Follower
from pyzdb.server.requestlog import log_failure, log_request
from pyzdb.server.tenancy import Tenancy
from pyzdb.storage.endpoint import remove_endpoint, write_endpoint
from pyzdb.values import measure, to_plain
from pyzdb.version import version_line

log = logging.getLogger("pyzdb.server")

DEFAULT_DATA = "./pyzdb-data"
#: Messages handled per turn, i.e. per fsync. 64 appends share one fsync at ~400k records/s on
#: the reference machine (performance-anchors.md); a larger batch only delays the first reply.
BATCH_LIMIT = 64
#: An fdatasync slower than this (`Journal.fsync_seconds`: the shortest recent one) runs in the sync
#: thread while the loop evaluates the next messages; a faster one runs in the loop. A hand-off
#: costs two thread wake-ups and the batch the loop would have gathered meanwhile. Measured on
#: the reference machine (2 vCPUs, 8 clients; docs/performance.md): with the local disk's
#: 60-90 us fdatasync the loop is as fast or faster; at ~0.25 ms the two are even; at ~0.65 ms
#: and 2 ms the thread wins by 1.7x and 1.1-1.3x.
OVERLAP_FSYNC = 0.0003
#: Longest sleep of the loop: a `Server` driven without `install_signal_handlers` (inside a
#: test, say) has no wakeup fd, and still sees `stop()` within this many seconds.
IDLE_POLL = 1.0
#: Frames of a routing envelope we echo back: the ROUTER's identity plus a few proxies.
MAX_ENVELOPE = 8
#: Requests that may wait for the lock at once; more are refused with LockTimeout at once, so
#: a flood while the lock is held costs bounded memory.
MAX_QUEUE = 10_000
#: Bad-input warnings logged per second; the rest are counted and summarised, so a hostile
#: peer cannot fill the disk through the log.
WARNINGS_PER_SECOND = 10
#: Ops that neither write nor hold state: their replies are not worth remembering when large.
_READ_OPS = frozenset({"query", "history", "blob", "ping", "info"})
#: Ops whose replies are never remembered: pings and the stream ops, which a client repeats
#: with new arguments rather than retries (their replies would evict those of writes).
_UNCACHED = frozenset({"ping", "watch", "replicate", "snapshot", "info"})
#: Ops answered at once even while another session holds the lock: they read no data.
_UNQUEUED_OPS = frozenset({"ping", "info"})
#: pyzmq's flags as plain ints: its enum flags cost an `enum` call per use on the hot path.
_POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)
_RCVMORE = int(zmq.RCVMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK
_MAIN_THREAD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}


@dataclass
class ServerConfig:
    """What `pyzdb-server` is told on its command line (the defaults are DESIGN.md's)."""

    data: str = DEFAULT_DATA
    bind: str = DEFAULT_URI
    fsync: str = "always"
    #: Wall-time budget of one request, seconds (None: the sandbox's default).
    time_limit: float | None = None
    #: Seconds a lock holder may stay silent before its transaction is rolled back.
    lease: float = 10.0
    #: Largest request frame; ZeroMQ drops bigger ones before Python sees them.
    max_message: int = protocol.MAX_REQUEST_SIZE
    #: Allow binding a non-loopback address without authentication.
    insecure: bool = False
    #: Journal records kept readable after a checkpoint (change feeds, replicas).
    retain_journal: int = feed.DEFAULT_RETAIN
    #: Follow the primary at this URI as a read-only replica.
    replica_of: str | None = None
    #: Records a primary keeps for a lagging replica beyond `retain_journal`.
    replica_backlog: int = feed.REPLICA_BACKLOG
    #: Keys directory (`pyzdb-keys init`): CURVE on, every message checked (`pyzdb.server.auth`).
    keys: str | None = None
    #: Budget of each request of a scoped key (time s, steps, size), so no tenant starves others.
    scoped_time: float = 1.0
    scoped_steps: int = 5_000_000
    scoped_size: int = 1_000_000
    #: Resident size (bytes) no request may push the process past; None: no ceiling.
    max_memory: int | None = None
    #: Seconds one session may hold the lock, however often it renews its lease.
    lock_max_hold: float = 300.0
    #: The credential file a replica presents to a primary with `--keys` (None: `$PYZDB_KEY`).
    replica_key: str | None = None


def check_bind(uri: str, insecure: bool = False, keys: bool = False) -> None:
    """Refuse a bind address other machines could reach unless the server authenticates every
    connection (`keys`) or the operator said `--insecure`.

    Without keys, anything but loopback, `ipc://` or `inproc://` would hand the database to the
    network, as the original did.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("tcp", "ipc", "inproc"):
        raise ValueError(f"cannot bind {uri!r}: use tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    if scheme != "tcp" or insecure or keys:
        return
    host = rest.rpartition(":")[0].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"refusing to bind {uri!r}: it is not a loopback address and the server has no "
            "authentication without --keys DIR (see pyzdb-keys); bind 127.0.0.1 (or ipc://), "
            "or pass --insecure if a firewall guards it"
        )


@dataclass
class _Waiting:
    """A request of another session that waits while the lock is held."""

    envelope: list[bytes]
    request: Request
    params: dict[str, Any]
    control: dict[str, Any]
    deadline: float


class _Throttle:
    """At most `rate` log lines per second; the lines it swallows are counted and summarised."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._window = 0.0
        self._count = 0
        self._dropped = 0

    def warning(self, message: str, *args: object) -> None:
        self.log(logging.WARNING, message, *args)

    def log(self, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window >= 1.0:
            if self._dropped:
                log.warning("... and %d more bad messages in the last second", self._dropped)
            self._window, self._count, self._dropped = now, 0, 0
        if self._count < self.rate:
            self._count += 1
            log.log(level, message, *args)
        else:
            self._dropped += 1


class _Syncer:
    """The sync thread of `--fsync always`: fdatasyncs the journal while the loop works on.

    The loop asks for a seq with `want(seq)`; the thread calls `Journal.sync()`, which covers
    every record appended before the call (so usually more than asked, and appends go on
    meanwhile), then writes a byte to a pipe that the loop polls. The loop reads how far the
    disk got from `Journal.durable_seq`. A failure is kept in `error` and ends the thread: the
    loop then fails the replies still waiting and stops.
    """

    def __init__(self, journal: Any) -> None:
        self._journal = journal
        self._wanted = 0  # highest seq asked for (loop thread only): asks strictly increase
        self._asks: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._thread = threading.Thread(target=self._run, name="pyzdb-sync", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        """The pipe end the loop polls: readable after each sync (or failure)."""
        return self._read_fd

    def idle(self) -> bool:
        """No sync asked for is still running or queued (the loop thread)."""
        return self._wanted <= self._journal.durable_seq

    def want(self, seq: int) -> None:
        """Ask for the journal to be durable up to `seq` (the loop thread)."""
        if seq > self._wanted:
            self._wanted = seq
            self._asks.put(seq)

    def clear(self) -> None:
        """Empty the pipe (the loop thread, after the poll said it is readable)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read_fd, 4096):
                pass

    def _run(self) -> None:
        # Process-directed signals (SIGINT, SIGTERM, the sandbox's SIGALRM) go to the main
        # thread, as before this thread existed: there they interrupt what the loop waits on.
        signal.pthread_sigmask(signal.SIG_BLOCK, _MAIN_THREAD_SIGNALS)
        journal, asks = self._journal, self._asks
        while True:
            seq = asks.get()
            if seq is None:
                return
            if journal.durable_seq >= seq:  # an earlier sync covered it, and woke the loop
                continue
            try:
                journal.sync()
            except BaseException as exc:  # kept for the loop, which fails the replies
                self.error = exc
                self._notify()
                return
            self._notify()

    def _notify(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: the loop has a wake-up pending
            os.write(self._write_fd, b"\0")

    def stop(self) -> None:
        """End the thread once the syncs asked for so far are done; close the pipe."""
        self._asks.put(None)
        self._thread.join()
        os.close(self._read_fd)
        os.close(self._write_fd)


class Server:
    """The engine behind a ROUTER socket; see the module docstring for one turn of the loop."""

    def __init__(self, config: ServerConfig, context: zmq.Context | None = None) -> None:
        check_bind(config.bind, config.insecure, config.keys is not None)
        if config.keys is not None:
            ServerAuth.check(config.keys)  # before the engine takes the data directory
        self.config = config
        budget = Budget()
        if config.time_limit is not None:
            budget = dataclasses.replace(budget, time=config.time_limit)
        if config.max_memory is not None:
            budget = dataclasses.replace(budget, max_memory=config.max_memory)
        self._max_result = budget.max_result
        self._budget_time = budget.time
        #: Set by the supervisor (`pyzdb.server.supervisor`): the page it watches, the requests it
        #: quarantined (a resend of one gets an error, never a second run).
        self.inflight: Any = None
        self.quarantine: dict[tuple[bytes, int], Any] = {}
        self.engine = Engine(
            config.data,
            EngineConfig(fsync=config.fsync, budget=budget, retain=config.retain_journal),
        )
        self.recovery = self.engine.recovery
        self.cache = ReplyCache()
        self._redact = Redactor(config.data)
        self._shares = QueueShares()
        self._hold_deadline = 0.0
        self._stopping = False
        self.exit_code = 0
        #: Replies to send: (journal seq it may reflect, envelope, request id, frame), in order.
        self._outbox: collections.deque[tuple[int, list[bytes], int, bytes]] = collections.deque()
        self._checked_seq = self.engine.last_seq  # the policy's sync() was called up to here
        self._holder: bytes | None = None
        self._lease_deadline = 0.0
        self._queue: list[_Waiting] = []
        self._queued: dict[tuple[bytes, int], _Waiting] = {}
        self._bad = _Throttle(WARNINGS_PER_SECOND)
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._ops: dict[str, Callable[[Request, dict[str, Any]], Any]] = {
            "query": self._op_query,
            "execute": self._op_execute,
            "undo": lambda request, params: self.engine.undo(sync=False),
            "redo": lambda request, params: self.engine.redo(sync=False),
            "checkpoint": lambda request, params: self.engine.checkpoint(),
            "history": lambda request, params: self.engine.history(),
            "lock": self._op_lock,
            "begin": self._op_lock,
            "unlock": self._op_unlock,
            "commit": self._op_unlock,
            "rollback": self._op_rollback,
            "ping": lambda request, params: None,
            "blob": lambda request, params: self.engine.read_blob(request.source),
            "info": lambda request, params: self.info(),
        }
        self.stats = RequestStats()
        self._journal = self.engine.journal
        self._follower = None
        if config.replica_of:
            self._follower = Follower(self, config.replica_of, config.replica_key)
            self._ops.update(self._follower.refused_ops())
        self.hub = feed.Hub(self, self._follower)
        self._ops.update(self.hub.ops)
        self._syncer: _Syncer | None = None
        self._context = context or zmq.Context()
        self._own_context = context is None
        self.socket = self._context.socket(zmq.ROUTER)
        self._auth: ServerAuth | None = None
        self._tenancy = Tenancy(self)
        self._hold_until = math.inf  # a scoped key's lock ends here, heartbeats or not
        if config.keys is not None:
            self._auth = ServerAuth(
                config.keys,
                self._context,
                dataclasses.replace(
                    budget,
                    time=config.scoped_time,
                    steps=config.scoped_steps,
                    max_size=config.scoped_size,
                ),
            )
            self._auth.configure(self.socket)
        self.socket.setsockopt(zmq.MAXMSGSIZE, config.max_message)
        self.socket.setsockopt(zmq.LINGER, 1000)
        try:
            self.socket.bind(config.bind)
        except zmq.ZMQError as exc:
            self.close()
            raise Error(f"cannot bind {config.bind}: {exc}") from None
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        write_endpoint(config.data, self.endpoint)
        if config.fsync == "always":
            self._syncer = _Syncer(self._journal)

    # -- the loop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the turn in hand and return (safe from a signal handler)."""
        self._stopping = True

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM stop the loop after the turn in hand (main thread only)."""
        self._wakeup = socket.socketpair()
        for end in self._wakeup:
            end.setblocking(False)
        signal.set_wakeup_fd(self._wakeup[1].fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda signum, frame: self.stop())
        if self._auth is not None:
            auth = self._auth
            signal.signal(signal.SIGHUP, lambda signum, frame: auth.ask_reload())

    def serve_forever(self) -> int:
        """Serve until `stop()`; returns the process exit status (0 unless the journal broke)."""
        items: list[tuple[Any, int]] = [(self.socket, _POLLIN)]
        wakeup = self._wakeup[0].fileno() if self._wakeup is not None else -1
        if wakeup >= 0:
            items.append((wakeup, _POLLIN))
        if self._syncer is not None:
            items.append((self._syncer.fileno(), _POLLIN))
        if self._follower is not None:
            items.append((self._follower.fileno(), _POLLIN))
            self._follower.start()
        try:
            while not self._stopping:
                batch: list[list[bytes]] = []
                for item, _ in zmq_poll(items, self._poll_timeout()):
                    if item is self.socket:
                        batch = self._drain(ready=True)
                    elif item == wakeup:
                        assert self._wakeup is not None
                        with contextlib.suppress(BlockingIOError):
                            while self._wakeup[0].recv(4096):
                                pass
                    elif self._follower is not None and item == self._follower.fileno():
                        self._follower.clear()
                    elif self._syncer is not None:
                        self._syncer.clear()
                self._turn(batch)
        finally:
            self.close()
        return self.exit_code

    def _poll_timeout(self) -> int:
        """Milliseconds until the next lease or queue deadline, at most `IDLE_POLL`."""
        parked = self.hub.next_deadline()
        if self._holder is None and not self._queue and parked is None:
            return int(IDLE_POLL * 1000)
        now = time.monotonic()
        deadline = now + IDLE_POLL if parked is None else min(now + IDLE_POLL, parked)
        if self._holder is not None:
            deadline = min(deadline, self._lease_deadline, self._hold_deadline)
        for waiting in self._queue:
            deadline = min(deadline, waiting.deadline)
        return int(max(0.0, deadline - now) * 1000)

    def _drain(self, ready: bool = False) -> list[list[bytes]]:
        """The messages ready now, up to `BATCH_LIMIT` (asking EVENTS is cheaper than the
        exception a receive on an empty socket raises; `ready`: the poll just said a message
        is there). A ROUTER prefixes every message with the sender's identity, so each has at
        least two frames."""
        if self._auth is not None:
            return self._auth.drain(self.socket, ready, BATCH_LIMIT)
        batch = []
        sock = self.socket
        recv, getsockopt = sock.recv, sock.getsockopt
        while len(batch) < BATCH_LIMIT and (ready or getsockopt(_EVENTS) & _POLLIN):
            ready = False
            try:
                identity = recv(_NOBLOCK)
            except zmq.Again:  # the poll's word went stale (it never does with one reader)
                break
            frames = [identity, recv(_NOBLOCK)]
            while getsockopt(_RCVMORE):
                frame = recv(_NOBLOCK)
                if len(frames) <= MAX_ENVELOPE + 2:  # more is refused anyway: keep no more
                    frames.append(frame)
            batch.append(frames)
        return batch

    def _turn(self, batch: list[list[bytes]]) -> None:
        """Steps 2-4 of the module docstring: expire, handle, then send what is durable."""
        if self._auth is not None:
            self._auth.refresh()  # a revoked key is refused from its next message
        if self._holder is not None or self._queue:
            self._expire(time.monotonic())
        for frames in batch:
            try:
                self._handle(frames)
            except Exception:  # a bug, not the client's fault: keep serving the others
                log.exception("internal error while handling a message; it got no reply")
        if self._follower is not None:
            self._follower.apply_ready()
        if self._outbox:
            self._flush()
        if self.hub.wake() and self._outbox:  # parked requests whose seq came (once durable)
            self._flush()

    def _flush(self) -> None:
        """Send the replies whose writes are durable; ask the sync thread for the rest."""
        outbox = self._outbox
        syncer = self._syncer
        if syncer is None:
            # everysec / no (or shutting down): one sync() call for the turn's writes, which
            # under `always` fsyncs here and otherwise only checks that the journal still works.
            last = self.engine.last_seq
            if last != self._checked_seq:
                try:
                    self.engine.sync()
                except Exception as exc:
                    self._fail_sync(exc)
                    return
                self._checked_seq = last
            durable = last
        else:
            if syncer.error is not None:
                self._fail_sync(syncer.error)
                return
            durable = self._journal.durable_seq
            if (
                outbox[-1][0] > durable
                and syncer.idle()
                and self._journal.fsync_seconds < OVERLAP_FSYNC
            ):
                # A fast disk: the fdatasync here costs less than handing it to the thread
                # (two thread wake-ups), and the batch it delays grows the next group.
                try:
                    self._journal.sync()
                except Exception as exc:
                    self._fail_sync(exc)
                    return
                durable = self._journal.durable_seq
        send = self._send_frames
        while outbox and outbox[0][0] <= durable:
            _, envelope, _, data = outbox.popleft()
            send(envelope, data)
        if outbox and syncer is not None:
            syncer.want(self.engine.last_seq)

    def _send_frames(self, envelope: list[bytes], data: bytes) -> None:
        sock = self.socket
        try:
            for frame in envelope:
                sock.send(frame, _SNDMORE_NOBLOCK)
            sock.send(data, _NOBLOCK)
        except zmq.ZMQError as exc:  # the peer's queue is full: it stopped reading
            log.debug("reply dropped: %s", exc)

    def _fail_sync(self, exc: BaseException) -> None:
        """The journal could not make writes durable: nobody may be told they are.

        The writes are in memory but not on disk, so the only safe state is the one on disk:
        every reply still waiting for the disk becomes an error (those already durable go out
        as they are) and the server stops (a restart recovers).
        """
        log.critical("journal sync failed, stopping so a restart recovers from disk: %s", exc)
        info = protocol.error_to_info(Error(f"the server could not make writes durable: {exc}"))
        durable = self._journal.durable_seq
        outbox, self._outbox = self._outbox, collections.deque()
        for needs, envelope, request_id, data in outbox:
            if needs > durable:
                data = protocol.pack(Reply(request_id, False, None, 0, info))
            self._send_frames(envelope, data)
        self.exit_code = 1
        self._stopping = True

    # -- one message -------------------------------------------------------------------------

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) == 2 and frames[1]:  # identity + frame: a pyzdb client, the usual case
            envelope, body = frames[:1], frames[1]
        else:
            envelope, rest = _split(frames)
            if len(rest) != 1:
                self._refuse(
                    envelope,
                    0,
                    ProtocolError(
                        f"expected one message frame after the routing envelope, got {len(rest)}"
                    ),
                )
                return
            body = rest[0]
        try:
            request = protocol.decode_request(body, self.config.max_message)
            params, control = _split_control(request)
            if self._auth is not None:
                request, control["grant"] = self._auth.admit(frames, request)
        except (ProtocolError, AuthenticationError, SecurityError) as exc:
            self._refuse(envelope, protocol.request_id_of(body), exc)
            return
        key = (request.session, request.id)
        if request.session:
            cached = self.cache.get(key)
            if cached is not None:
                log.debug(
                    "repeat of request %d of session %s: answered from the reply cache",
                    request.id,
                    request.session.hex(),
                )
                self._outbox.append((self.engine.last_seq, envelope, request.id, cached))
                return
            if key in self.quarantine:
                self._reply(
                    envelope,
                    request,
                    Reply(
                        request.id,
                        False,
                        None,
                        self.engine.last_seq,
                        protocol.error_to_info(Error(self.quarantine[key].message())),
                    ),
                )
                return
            waiting = self._queued.get(key)
            if waiting is not None:  # a retry over a new connection: answer there
                waiting.envelope = envelope
                return
        if self.hub.intercept(envelope, request, params, control):
            return
        if (
            self._holder is None
            or request.session == self._holder
            or request.op in _UNQUEUED_OPS
            or control.get("txn")
        ):
            self._run(envelope, request, params, control)
            if self._holder is None and self._queue:
                self._serve_queue()
            return
        if not self._shares.admit(request.session or envelope[0]):
            self._reply(
                envelope,
                request,
                Reply(
                    request.id,
                    False,
                    None,
                    self.engine.last_seq,
                    protocol.error_to_info(
                        LockTimeout(
                            f"the database is locked and this client has "
                            f"{self._shares.per_client} requests waiting already"
                        )
                    ),
                ),
            )
            return
        if len(self._queue) >= MAX_QUEUE:
            self._shares.release(request.session or envelope[0])
            self._reply(
                envelope,
                request,
                Reply(
                    request.id,
                    False,
                    None,
                    self.engine.last_seq,
                    protocol.error_to_info(
                        LockTimeout(f"the database is locked and {MAX_QUEUE} requests wait already")
                    ),
                ),
            )
            return
        wait = control.get("wait", 0.0)
        waiting = _Waiting(envelope, request, params, control, time.monotonic() + wait)
        self._queue.append(waiting)
        if request.session:
            self._queued[key] = waiting

    def _refuse(self, envelope: list[bytes], request_id: int, exc: Exception) -> None:
        self._bad.warning("bad message from peer %s: %s", envelope[0].hex(), exc)
        self._reply(
            envelope,
            None,
            Reply(request_id, False, None, self.engine.last_seq, protocol.error_to_info(exc)),
        )

    def _run(
        self,
        envelope: list[bytes],
        request: Request,
        params: dict[str, Any],
        control: dict[str, Any],
    ) -> None:
        """Run one request on the engine and queue its reply (remembered for retries)."""
        session = request.session
        if session and session == self._holder:
            self._renew()
        started = time.perf_counter()
        outcome = "ok"
        try:
            if control.get("txn") and session != self._holder:
                raise LockTimeout(
                    "the lock of this connection was released and its transaction rolled back "
                    f"(its lease of {self.config.lease:g} s expired, it held the lock past "
                    f"--lock-max-hold of {self.config.lock_max_hold:g} s, or the server "
                    "restarted)"
                )
            grant = control.get("grant")
            run = (
                self._ops[request.op]
                if grant is None
                else functools.partial(self._tenancy.run, grant)
            )
            if self.inflight is not None and request.op in ("query", "execute"):
                self.inflight.enter(session, request.id, envelope[0], request.op, self._budget_time)
                try:
                    value = run(request, params)
                finally:
                    self.inflight.leave()
                    release_leftovers()
            else:
                value = run(request, params)
            if type(value) is Encoded:  # query and execute: no Reply object to build
                data = protocol.pack_value_reply(request.id, value, self.engine.last_seq)
            else:
                data = protocol.pack(Reply(request.id, True, value, self.engine.last_seq))
        except Exception as exc:
            outcome = log_failure(self._bad, request, exc)
            data = protocol.pack(
                Reply(
                    request.id,
                    False,
                    None,
                    self.engine.last_seq,
                    protocol.error_to_info(self._redact(exc)),
                )
            )
        self.stats.record(session, outcome)
        if log.isEnabledFor(logging.DEBUG):
            log_request(request, data, started, outcome)
        if session and session == self._holder:
            self._renew()
        self._send(envelope, request, data)

    def _reply(self, envelope: list[bytes], request: Request | None, reply: Reply) -> None:
        self._send(envelope, request, protocol.pack(reply))

    def _send(self, envelope: list[bytes], request: Request | None, data: bytes) -> None:
        """Queue a reply until the writes it may reflect are durable; remember it for a retry
        of the request."""
        if (
            request is not None
            and request.session
            and request.op not in _UNCACHED
            and not (request.op in _READ_OPS and len(data) > self.cache.max_bytes // 64)
        ):
            self.cache.put((request.session, request.id), data)
        self._outbox.append((self.engine.last_seq, envelope, request.id if request else 0, data))

    # -- the ops -----------------------------------------------------------------------------

    def info(self) -> dict[str, dict[str, Any]]:
        """`db.info()`: the engine's sections plus this server's; add a feature's section here."""
        role = "primary" if self._follower is None else "replica"
        sections = engine_sections(self.engine, role, self.stats.started)
        sections["server"]["bind"] = self.endpoint
        sections["server"]["lease_seconds"] = self.config.lease
        sections["clients"] = self.stats.section()
        sections["clients"]["lock_holder"] = self._holder.hex() if self._holder else None
        sections["clients"]["queued"] = len(self._queue)
        return sections

    def _op_query(self, request: Request, params: dict[str, Any]) -> Encoded:
        return self.engine.run(
            request.source,
            write=False,
            syntax=request.syntax,
            params=params,
            root=request.root,
            finish=self._encode,
        )

    def _op_execute(self, request: Request, params: dict[str, Any]) -> Encoded:
        return self.engine.run(
            request.source,
            write=True,
            syntax=request.syntax,
            params=params,
            root=request.root,
            sync=False,
            finish=self._encode,
            tag=feed.make_tag(request),
        )

    def _encode(self, value: Any) -> Encoded:
        """The engine's `finish`: encode the result once, inside the unit, within the budget.

        The size is checked *before* encoding, counting every reference to a shared container
        in full as the codec will (`values.measure`): `[[big] * 1000] * 1000` is small in
        memory but would expand to terabytes on the wire. A value of scalars, dicts and lists
        only is then written by msgpack in C (`protocol.encode_wire`). A value the codec refuses (a
        generator, a view, a cycle) goes through `to_plain` for the error the embedded database
        raises, naming the type and where it sits.
        """
        found = measure(value, self._max_result)
        if found.size > self._max_result:
            raise LimitExceeded(
                f"query result is larger than the result budget of {self._max_result} bytes",
                "result",
            )
        try:
            data = protocol.encode_wire(value, found.native)
        except (TypeError, ValueError):
            data = protocol.encode_value(to_plain(value))
        return Encoded(data)

    def _op_lock(self, request: Request, params: dict[str, Any]) -> float:
        """Take the lock (others were queued, so it is free or ours); the reply is the lease."""
        if not request.session:
            raise Error("lock needs a session id: connect with pyzdb.connect")
        if self._holder == request.session:
            raise Error("the database is already locked by this connection")
        self.engine.begin()
        self._holder = request.session
        self._renew()
        self._hold_deadline = time.monotonic() + self.config.lock_max_hold
        log.debug("session %s holds the lock", request.session.hex())
        return self.config.lease

    def _op_unlock(self, request: Request, params: dict[str, Any]) -> None:
        self._check_holder(request)
        tag = feed.make_tag(request)
        try:
            self.engine.commit(sync=False, tag=tag and (lambda: tag(None)))
        finally:
            self._release()

    def _op_rollback(self, request: Request, params: dict[str, Any]) -> None:
        self._check_holder(request)
        try:
            self.engine.rollback()
        finally:
            self._release()

    def _check_holder(self, request: Request) -> None:
        if self._holder is None or request.session != self._holder:
            raise Error("the database is not locked")

    # -- the lock and its queue --------------------------------------------------------------

    def _renew(self) -> None:
        self._lease_deadline = min(time.monotonic() + self.config.lease, self._hold_until)

    def _release(self) -> None:
        log.debug("session %s released the lock", self._holder.hex() if self._holder else "-")
        self._holder = None
        self._hold_until = math.inf

    def _expire(self, now: float) -> None:
        if self._holder is not None and (now >= self._lease_deadline or now >= self._hold_deadline):
            why = (
                f"held the lock past --lock-max-hold ({self.config.lock_max_hold:g} s)"
                if now >= self._hold_deadline
                else f"was silent past its lease of {self.config.lease:g} s"
            )
            log.warning(
                "session %s %s: its transaction is rolled back and the lock released",
                self._holder.hex(),
                why,
            )
            try:
                self.engine.rollback()
            finally:
                self._release()
        if any(waiting.deadline <= now for waiting in self._queue):
            for waiting in [w for w in self._queue if w.deadline <= now]:
                self._unqueue(waiting)
                error = LockTimeout(
                    "the database stayed locked by another connection for the "
                    f"{waiting.control.get('wait', 0.0):g} s this request could wait"
                )
                self._reply(
                    waiting.envelope,
                    waiting.request,
                    Reply(
                        waiting.request.id,
                        False,
                        None,
                        self.engine.last_seq,
                        protocol.error_to_info(error),
                    ),
                )
        if self._holder is None and self._queue:
            self._serve_queue()

    def _serve_queue(self) -> None:
        """Run queued requests in arrival order while the lock lets them through.

        A run can take or release the lock, which changes who may go next, so the scan
        restarts after each run. A session's requests keep their order: when one of them is
        held back, so are all its later ones (the same test applies to them).
        """
        index = 0
        while index < len(self._queue):
            waiting = self._queue[index]
            if self._holder is None or waiting.request.session == self._holder:
                self._unqueue(waiting)
                self._run(waiting.envelope, waiting.request, waiting.params, waiting.control)
                index = 0
            else:
                index += 1

    def _unqueue(self, waiting: _Waiting) -> None:
        self._shares.release(waiting.request.session or waiting.envelope[0])
        self._queue.remove(waiting)
        self._queued.pop((waiting.request.session, waiting.request.id), None)

    # -- shutdown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Send the replies still waiting (once durable), roll back an open transaction, close
        the engine (fsync) and the socket."""
        syncer, self._syncer = self._syncer, None
        if syncer is not None:
            syncer.stop()
        if self._follower is not None:
            self._follower.stop()
        if self._outbox:
            if syncer is not None and syncer.error is not None:
                self._fail_sync(syncer.error)
            else:
                self._flush()  # without the sync thread: one sync here, then every reply
        if self._holder is not None:
            log.info("rolling back the open transaction of session %s", self._holder.hex())
            self._holder = None
        remove_endpoint(self.config.data)
        try:
            self.engine.close()
        finally:
            self.socket.close()
            if self._auth is not None:
                self._auth.close()
            if self._own_context:
                self._context.term()
            if self._wakeup is not None:
                signal.set_wakeup_fd(-1)
                for end in self._wakeup:
                    end.close()


def _split(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Routing envelope (identity ... empty delimiter) and body. REQ and our DEALER clients
    send the delimiter; without one, the envelope is the identity alone."""
    for index in range(1, min(len(frames), MAX_ENVELOPE + 1)):
        if not frames[index]:
            return frames[: index + 1], frames[index + 1 :]
    return frames[:1], frames[1:]


def _split_control(request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """The query's own params, and the client's control values (see `CONTROL_PARAM`)."""
    params = request.params
    if CONTROL_PARAM not in params:
        return params, {}
    params = dict(params)
    control = params.pop(CONTROL_PARAM)
    if not (
        type(control) is dict
        and type(control.get("wait", 0.0)) in (int, float)
        and 0 <= control.get("wait", 0.0) <= 86400
        and type(control.get("txn", False)) is bool
    ):
        raise ProtocolError(
            f"{CONTROL_PARAM} must be a dict with 'wait' (seconds, 0-86400) and 'txn' (bool)"
        )
    return params, control


# -- the console script ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyzdb-server",
        description="Serve a pyzdb data directory over ZeroMQ (loopback only by default).",
    )
    parser.add_argument(
        "--data",
        default=DEFAULT_DATA,
        metavar="DIR",
        help=f"data directory, created if needed (default {DEFAULT_DATA})",
    )
    parser.add_argument(
        "--bind",
        default=DEFAULT_URI,
        metavar="URI",
        help=f"ZeroMQ address to listen on (default {DEFAULT_URI})",
    )
    parser.add_argument(
        "--fsync",
        choices=("always", "everysec", "no"),
        default="always",
        help="when the journal reaches the disk (default always: before every reply)",
    )
    parser.add_argument(
        "--time-limit", type=float, metavar="S", help="wall-time budget of one request in seconds"
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a silent lock holder keeps the lock (default 10)",
    )
    parser.add_argument(
        "--max-message",
        type=int,
        default=protocol.MAX_REQUEST_SIZE,
        metavar="BYTES",
        help="largest request accepted (default 16 MiB)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback --bind without authentication"
    )
    parser.add_argument(
        "--retain-journal",
        type=int,
        default=feed.DEFAULT_RETAIN,
        metavar="N",
        help="journal records kept readable after a checkpoint, for change "
        f"feeds and replicas (default {feed.DEFAULT_RETAIN})",
    )
    parser.add_argument(
        "--replica-of", metavar="URI", help="serve read-only, following the primary at URI"
    )
    parser.add_argument(
        "--key",
        metavar="FILE",
        help="with --replica-of: the credential file (pyzdb-keys add ... --role "
        "admin) this replica presents to a primary started with --keys "
        "(default $PYZDB_KEY); a key the primary refuses is logged and retried "
        "while the replica keeps serving what it has",
    )
    parser.add_argument(
        "--replica-backlog",
        type=int,
        default=feed.REPLICA_BACKLOG,
        metavar="N",
        help="records kept for a lagging replica beyond "
        f"--retain-journal; past it, it resyncs (default {feed.REPLICA_BACKLOG})",
    )
    parser.add_argument(
        "--keys",
        metavar="DIR",
        help="CURVE keys and access list made by "
        "pyzdb-keys: every connection authenticated, roles and scopes enforced",
    )
    parser.add_argument(
        "--scoped-time",
        type=float,
        default=1.0,
        metavar="S",
        help="wall-time budget of a scoped key's request (default 1)",
    )
    parser.add_argument(
        "--scoped-steps",
        type=int,
        default=5_000_000,
        metavar="N",
        help="loop-step budget of a scoped key's request (default 5000000)",
    )
    parser.add_argument(
        "--scoped-size",
        type=int,
        default=1_000_000,
        metavar="N",
        help="largest object a scoped key's request may build (default 1000000)",
    )
    parser.add_argument("--version", action="version", version=version_line("pyzdb-server"))
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    parser.add_argument(
        "--kill-grace",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds past its time budget a request may run inside one C "
        "call before the supervisor kills and restarts the worker (default 1)",
    )
    parser.add_argument(
        "--max-memory",
        type=parse_size,
        default=default_max_memory(),
        metavar="SIZE",
        help="resident size a request may not push the "
        "server past, e.g. 512M or 4G (default: half of the machine's memory)",
    )
    parser.add_argument(
        "--lock-max-hold",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds one connection may hold the lock, even while it keeps "
        "renewing its lease (default 300)",
    )
    parser.add_argument(
        "--no-supervisor",
        action="store_true",
        help="serve in this process, without a supervisor to restart it",
    )
    return parser


def server_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pyzdb-server`: exit 0 after a clean stop (SIGINT/SIGTERM), else 1/2."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if (
        args.lease <= 0
        or args.max_message <= 0
        or args.retain_journal < 0
        or args.replica_backlog < 0
        or not args.kill_grace > 0
        or not args.lock_max_hold > 0
    ):
        print(
            "pyzdb-server: --lease, --max-message, --kill-grace and --lock-max-hold must be "
            "positive, --retain-journal and --replica-backlog >= 0",
            file=sys.stderr,
        )
        return 2
    if args.key is not None and not args.replica_of:
        print(
            "pyzdb-server: --key is the credential a replica presents to its primary: "
            "use it with --replica-of URI",
            file=sys.stderr,
        )
        return 2
    if args.replica_of:
        try:
            credential_for(args.key)
        except Error as exc:
            print(f"pyzdb-server: --key: {exc}", file=sys.stderr)
            return 2
    config = ServerConfig(
        args.data,
        args.bind,
        args.fsync,
        args.time_limit,
        args.lease,
        args.max_message,
        args.insecure,
        retain_journal=args.retain_journal,
        replica_of=args.replica_of,
        replica_backlog=args.replica_backlog,
        replica_key=args.key,
        keys=args.keys,
        scoped_time=args.scoped_time,
        scoped_steps=args.scoped_steps,
        scoped_size=args.scoped_size,
        max_memory=args.max_memory,
        lock_max_hold=args.lock_max_hold,
    )
    try:
        check_bind(config.bind, config.insecure, keys=config.keys is not None)
    except ValueError as exc:
        print(f"pyzdb-server: {exc}", file=sys.stderr)
        return 2
    if args.no_supervisor:
        return _serve(config, None, {}, None)
    from pyzdb.server.supervisor import Supervisor

    def serve(
        inflight: Any, quarantine: dict[tuple[bytes, int], Any], ready: Callable[[], None]
    ) -> int:
        return _serve(config, inflight, quarantine, ready)

    return Supervisor(serve, config.data, args.kill_grace).run()


def _serve(
    config: ServerConfig,
    inflight: Any,
    quarantine: dict[tuple[bytes, int], Any],
    ready: Callable[[], None] | None,
) -> int:
    """Recover, bind and serve until stopped (the worker of the supervisor, or the process)."""
    try:
        server = Server(config)
    except ValueError as exc:
        print(f"pyzdb-server: {exc}", file=sys.stderr)
        return 2
    except (Error, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    server.inflight = inflight
    server.quarantine = quarantine
    report = server.recovery
    log.info(
        "recovered %s: checkpoint seq %d, %d records (%d effects) replayed in %.3f s",
        config.data,
        report.checkpoint_seq,
        report.records_replayed,
        report.effects_replayed,
        report.seconds,
    )
    log.info("serving on %s (fsync %s, lease %g s)", server.endpoint, config.fsync, config.lease)
    server.install_signal_handlers()
    if ready is not None:
        ready()
    status = server.serve_forever()
    log.info("stopped")
    return status


__all__ = [
    "Server",
    "ServerConfig",
    "ReplyCache",
    "check_bind",
    "server_main",
    "DEFAULT_DATA",
]
