"""The server: one process, one ZeroMQ ROUTER socket, one engine, requests one at a time.

Theory of operation (one turn of the loop)
------------------------------------------
1. Wait for messages, or for the next lease or queue deadline. SIGINT/SIGTERM only set a
   flag, and their wakeup fd (`signal.set_wakeup_fd`) ends the wait at once.
2. Expire: a lock holder silent past its lease (or past its hold cap) is rolled back and
   loses the lock; a queued request past its wait limit gets a `LockTimeout` reply
   (`pyzdb.server.lockqueue`).
3. Drain the messages that are ready, up to `BATCH_LIMIT`, and handle each in arrival order
   (`pyzdb.server.dispatch`). A repeat of a `(session, id)` already answered gets the
   remembered reply (at-most-once: the client's lazy-pirate retry resends the same id;
   `pyzdb.server.sessions`). While one session holds the lock, the requests of every other
   session wait in a FIFO queue (exclusive access, as in the original). Anything else runs on
   the engine now, writes with `sync=False`.
4. Each reply joins the outbox with the journal seq it may reflect, and leaves once that seq is
   durable: group commit, with the fdatasync overlapped with the next messages on a slow disk
   (`pyzdb.server.outbox`).

The engine runs in the main thread because the sandbox's wall-time budget uses SIGALRM, which
Python delivers there only. pyzmq retries a poll interrupted by a signal (EINTR) after running
the Python handler, so a handler must not raise there: ours set a flag, and the wakeup fd makes
the poll return (a SIGALRM that lands while idle just wakes it once).

Nothing a client sends is unpickled: frames are decoded by `pyzdb.net.messages` alone, and every
bad frame gets an error reply, is logged (throttled), and changes nothing. The one exception
is a frame over `--max-message`: libzmq (MAXMSGSIZE) drops it with the connection before
Python sees it, so nobody can answer; the client refuses such requests itself, and one that
got through anyway ends in the client's ConnectionError, which names the request's size.

Change feeds, replica streams and snapshots are `pyzdb.server.feed.Hub`'s; following a
primary is `pyzdb.server.replica.Follower`'s (`--replica-of`); `info` is
`pyzdb.server.status`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import socket
import time
from typing import Any

import zmq
from zmq import zmq_poll

from pyzdb.engine import Engine, EngineConfig
from pyzdb.errors import Error
from pyzdb.info import RequestStats
from pyzdb.sandbox import Budget
from pyzdb.server.auth import ServerAuth
from pyzdb.server.dispatch import Dispatcher
from pyzdb.server.feed import Hub
from pyzdb.server.lockqueue import LockQueue
from pyzdb.server.ops import EngineOps
from pyzdb.server.options import ServerConfig, check_bind
from pyzdb.server.outbox import Outbox
from pyzdb.server.replica import Follower
from pyzdb.server.router import POLLIN, Router
from pyzdb.server.sessions import SessionMemory
from pyzdb.server.status import info_sections
from pyzdb.storage.endpoint import remove_endpoint, write_endpoint

log = logging.getLogger("pyzdb.server")

#: Messages handled per turn, i.e. per fsync. 64 appends share one fsync at ~400k records/s on
#: the reference machine (docs/performance.md); a larger batch only delays the first reply.
BATCH_LIMIT = 64
#: Longest sleep of the loop: a `Server` driven without `install_signal_handlers` (inside a
#: test, say) has no wakeup fd, and still sees `stop()` within this many seconds.
IDLE_POLL = 1.0


class Server:
    """The engine behind a ROUTER socket; see the module docstring for one turn of the loop.

    Its parts: `router` (the socket), `dispatch` (one message), `locks` (the lock and its
    queue), `outbox` (replies held until durable), `sessions` (the reply cache and the
    quarantine), `ops` (the op table), `hub` (streams), `follower` (a replica's fetching).
    """

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
        self.engine = Engine(
            config.data,
            EngineConfig(fsync=config.fsync, budget=budget, retain=config.retain_journal),
        )
        self.recovery = self.engine.recovery
        self.engine.journal.reopen_hint = "the server is restarted"
        self._stopping = False
        self.exit_code = 0
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self.stats = RequestStats()
        self.locks = LockQueue(self.engine, config.lease, config.lock_max_hold)
        self.engine_ops = EngineOps(self.engine, self.locks, budget.max_result)
        self.ops = self.engine_ops.table()
        self.ops["info"] = lambda request, params: info_sections(self)
        self.follower: Follower | None = None
        if config.replica_of:
            self.follower = Follower(self, config.replica_of, config.replica_key)
            self.ops.update(self.follower.refused_ops())
        self.sessions = SessionMemory(self.engine)
        self.hub = Hub(self, self.follower)
        self.ops.update(self.hub.ops)
        self.context = context or zmq.Context()
        self._own_context = context is None
        self.auth: ServerAuth | None = None
        if config.keys is not None:
            self.auth = ServerAuth(
                config.keys,
                self.context,
                dataclasses.replace(
                    budget,
                    time=config.scoped_time,
                    steps=config.scoped_steps,
                    max_size=config.scoped_size,
                ),
            )
        self.router = Router(self.context, self.auth, 1 if config.behind_front else 0)
        if config.behind_front:
            self.router.behind_front()
        self.outbox = Outbox(self.engine, self.router.send, self._journal_failed)
        self.dispatch = Dispatcher(self, budget.time)
        try:
            self.endpoint = self.router.bind(config.bind, config.max_message)
        except zmq.ZMQError as exc:
            self.close()
            raise Error(f"cannot bind {config.bind}: {exc}") from None
        #: Where clients reach this server: the front's endpoint behind `--front`.
        self.public = config.public or self.endpoint
        write_endpoint(config.data, self.public)
        if config.fsync == "always":
            self.outbox.start_sync_thread()

    def supervise(self, inflight: Any, quarantine: dict[tuple[bytes, int], Any]) -> None:
        """Serve as the supervisor's worker (`pyzdb.server.main`): write each evaluation to
        the `inflight` page, and refuse the resends of the `quarantine`d requests."""
        self.dispatch.inflight = inflight
        self.sessions.learn(quarantine, self.config.max_message)
        if self.config.front:  # the front reads there what every reply so far may reflect
            inflight.acknowledged(self.engine.last_seq)
            self.outbox.acknowledge = inflight.acknowledged

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
        if self.auth is not None:
            auth = self.auth
            signal.signal(signal.SIGHUP, lambda signum, frame: auth.ask_reload())

    def serve_forever(self) -> int:
        """Serve until `stop()`; returns the process exit status (0 unless the journal broke)."""
        router, syncer, follower = self.router, self.outbox.syncer, self.follower
        items: list[tuple[Any, int]] = [(router.socket, POLLIN)]
        wakeup = self._wakeup[0].fileno() if self._wakeup is not None else -1
        if wakeup >= 0:
            items.append((wakeup, POLLIN))
        if syncer is not None:
            items.append((syncer.fileno(), POLLIN))
        if follower is not None:
            items.append((follower.fileno(), POLLIN))
            follower.start()
        try:
            while not self._stopping:
                batch: list[list[bytes]] = []
                for item, _ in zmq_poll(items, self._poll_timeout()):
                    if item is router.socket:
                        batch = router.drain(BATCH_LIMIT, ready=True)
                    elif item == wakeup:
                        assert self._wakeup is not None
                        with contextlib.suppress(BlockingIOError):
                            while self._wakeup[0].recv(4096):
                                pass
                    elif follower is not None and item == follower.fileno():
                        follower.clear()
                    elif syncer is not None:
                        syncer.clear()
                self.turn(batch)
        finally:
            self.close()
        return self.exit_code

    def _poll_timeout(self) -> int:
        """Milliseconds until the next lease, queue or long-poll deadline, at most `IDLE_POLL`."""
        parked = self.hub.next_deadline()
        locks = self.locks.next_deadline()
        if parked is None and locks is None:
            return int(IDLE_POLL * 1000)
        now = time.monotonic()
        deadline = now + IDLE_POLL
        if parked is not None:
            deadline = min(deadline, parked)
        if locks is not None:
            deadline = min(deadline, locks)
        return int(max(0.0, deadline - now) * 1000)

    def turn(self, batch: list[list[bytes]]) -> None:
        """Steps 2-4 of the module docstring: expire, handle, then send what is durable."""
        if self.auth is not None:
            self.auth.refresh()  # a revoked key is refused from its next message
        if self.locks.busy():
            self._expire(time.monotonic())
        handle = self.dispatch.handle
        for frames in batch:
            try:
                handle(frames)
            except Exception:  # a bug, not the client's fault: keep serving the others
                log.exception("internal error while handling a message; it got no reply")
        if self.follower is not None:
            self.follower.apply_ready()
        outbox = self.outbox
        if outbox:
            outbox.flush()
        if self.hub.wake() and outbox:  # parked requests whose seq came (once durable)
            outbox.flush()

    def _expire(self, now: float) -> None:
        locks, dispatch = self.locks, self.dispatch
        for waiting, error in locks.expire(now):
            dispatch.fail(waiting.envelope, waiting.request, error)
        if locks.holder is None and locks.queue:
            locks.serve(dispatch.run_parked)

    def _journal_failed(self, replaced: dict[int, bytes], matched: bool) -> None:
        """The journal could not make writes durable (`Outbox.fail`): a retry of a request
        whose reply became an error gets that error. The server goes on serving reads, unless
        memory could not be taken back to what the journal holds: then it stops, and a restart
        (the supervisor's) recovers from disk."""
        self.sessions.cache.replace(replaced)
        if not matched:
            self.exit_code = 1
            self._stopping = True

    # -- shutdown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Send the replies still waiting (once durable), roll back an open transaction, close
        the engine (fsync) and the socket."""
        if self.follower is not None:
            self.follower.stop()
        self.outbox.close()
        self.locks.close()
        remove_endpoint(self.config.data)
        try:
            self.engine.close()
        finally:
            self.router.close()
            if self.auth is not None:
                self.auth.close()
            if self._own_context:
                self.context.term()
            if self._wakeup is not None:
                signal.set_wakeup_fd(-1)
                for end in self._wakeup:
                    end.close()


__all__ = ["BATCH_LIMIT", "IDLE_POLL", "Server"]
