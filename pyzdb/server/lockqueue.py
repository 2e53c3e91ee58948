"""The lock and its queue: one session at a time may hold the database, the others wait.

While one session holds the lock, the requests of every other session wait in a FIFO queue
(exclusive access, as in the original), each at most the `wait` its client gave; a session's
requests keep their order. The holder keeps the lock by talking (each request and heartbeat
renews its *lease*); one silent past its lease is rolled back and loses it.

A hold also has an end that talking does not move, the *hold cap*: `--lock-max-hold` for
everybody, and for a scoped key the shorter of that and one lease (`pyzdb.server.tenancy`: a
tenant must not keep the others out by heartbeats). Both are the same fact, "this hold ends
at T whatever the holder does", so they are one deadline set when the lock is taken, with the
reason the log gives when it ends a hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyzdb.engine import Engine
from pyzdb.errors import Error, LockTimeout
from pyzdb.net.messages import Request
from pyzdb.server.fairness import QueueShares
from pyzdb.server.parked import Parked
from pyzdb.server.router import peer_of
from pyzdb.server.sessions import make_tag

if TYPE_CHECKING:
    from pyzdb.server.auth import Grant

log = logging.getLogger("pyzdb.server")

#: Requests that may wait for the lock at once; more are refused with LockTimeout at once, so
#: a flood while the lock is held costs bounded memory.
MAX_QUEUE = 10_000
#: Ops answered at once even while another session holds the lock: they read no data.
_UNQUEUED_OPS = frozenset({"ping", "info"})


class LockQueue:
    """The lock of one engine (its transaction), its holder's deadlines, and the waiters."""

    def __init__(self, engine: Engine, lease: float, max_hold: float) -> None:
        self._engine = engine
        #: Seconds a holder may stay silent (`--lease`) and hold in all (`--lock-max-hold`).
        self.lease = lease
        self.max_hold = max_hold
        self.holder: bytes | None = None
        self._lease_deadline = 0.0
        self._hold_deadline = 0.0
        self._hold_limit = ""  # what set the hold cap, for the log line that ends a hold
        #: The requests waiting, in arrival order (read it; `enqueue`, `expire` and `serve`
        #: change it).
        self.queue: list[Parked] = []
        self.queued: dict[tuple[bytes, int], Parked] = {}
        #: The queued request of (session, id), if any (a retry over a new connection): the
        #: dict's own `get` (it runs for every request with a session).
        self.waiting = self.queued.get
        self._shares = QueueShares()

    # -- the lock ----------------------------------------------------------------------------

    def take(self, request: Request, cap: float | None = None, limit: str = "") -> float:
        """Take the lock (others were queued, so it is free or ours); the reply is the lease.

        `cap`: a hold shorter than `--lock-max-hold` (named by `limit` in the log line that
        ends it), however often the holder renews its lease.
        """
        if not request.session:
            raise Error("lock needs a session id: connect with pyzdb.connect")
        if self.holder == request.session:
            raise Error("the database is already locked by this connection")
        self._engine.begin()
        self.holder = request.session
        now = time.monotonic()
        self._lease_deadline = now + self.lease
        if cap is not None and cap < self.max_hold:
            self._hold_deadline, self._hold_limit = now + cap, f"{limit} ({cap:g} s)"
        else:
            self._hold_deadline = now + self.max_hold
            self._hold_limit = f"--lock-max-hold ({self.max_hold:g} s)"
        log.debug("session %s holds the lock", request.session.hex())
        return self.lease

    def commit(self, request: Request, label: str | None = None) -> None:
        """Commit the holder's transaction (labelled `label`, else journalled with the
        request's tag for exactly-once) and release the lock, even if the commit fails."""
        self.check_holder(request)
        try:
            if label is None:
                tag = make_tag(request)
                self._engine.commit(sync=False, tag=tag and (lambda: tag(None)))
            else:
                self._engine.commit(label, sync=False)
        finally:
            self.release()

    def rollback(self, request: Request) -> None:
        """Roll back the holder's transaction and release the lock."""
        self.check_holder(request)
        try:
            self._engine.rollback()
        finally:
            self.release()

    def check_holder(self, request: Request) -> None:
        if self.holder is None or request.session != self.holder:
            raise Error("the database is not locked")

    def renew(self) -> None:
        """The holder spoke: its lease starts again (its hold cap stays)."""
        self._lease_deadline = time.monotonic() + self.lease

    def release(self) -> None:
        log.debug("session %s released the lock", self.holder.hex() if self.holder else "-")
        self.holder = None

    def lost(self) -> LockTimeout:
        """The error of a request in a transaction whose lock is gone."""
        return LockTimeout(
            "the lock of this connection was released and its transaction rolled back "
            f"(its lease of {self.lease:g} s expired, it held the lock past "
            f"--lock-max-hold of {self.max_hold:g} s, or the server "
            "restarted)"
        )

    def lets_through(self, request: Request) -> bool:
        """While the lock is held, may `request` run now rather than wait in the queue? The
        holder's own requests may, the ops that read no data, and a request of a transaction
        (which fails at once if its lock is gone)."""
        return request.session == self.holder or request.op in _UNQUEUED_OPS or request.txn

    # -- the queue ---------------------------------------------------------------------------

    def busy(self) -> bool:
        """Is the lock held or a request waiting (so deadlines may pass)?"""
        return self.holder is not None or bool(self.queue)

    def enqueue(
        self,
        envelope: list[bytes],
        request: Request,
        grant: Grant | None,
        frame: bytes = b"",
    ) -> LockTimeout | None:
        """Queue a request until the lock lets it through; the refusal if it may not wait."""
        client = request.session or peer_of(envelope)
        if not self._shares.admit(client):
            return LockTimeout(
                f"the database is locked and this client has "
                f"{self._shares.per_client} requests waiting already"
            )
        if len(self.queue) >= MAX_QUEUE:
            self._shares.release(client)
            return LockTimeout(f"the database is locked and {MAX_QUEUE} requests wait already")
        wait = request.wait or 0.0  # None: no wait in the queue
        waiting = Parked(envelope, request, grant, time.monotonic() + wait, frame=frame)
        self.queue.append(waiting)
        if request.session:
            self.queued[(request.session, request.id)] = waiting
        return None

    def next_deadline(self) -> float | None:
        """Monotonic time of the next lease, hold or queue deadline (None: nothing waits)."""
        deadline = None
        if self.holder is not None:
            deadline = min(self._lease_deadline, self._hold_deadline)
        for waiting in self.queue:
            if deadline is None or waiting.deadline < deadline:
                deadline = waiting.deadline
        return deadline

    def expire(self, now: float) -> list[tuple[Parked, LockTimeout]]:
        """Roll back a holder past its lease or its hold cap; take out the requests past
        their wait, each with the LockTimeout it gets."""
        if self.holder is not None and (now >= self._lease_deadline or now >= self._hold_deadline):
            why = (
                f"held the lock past {self._hold_limit}"
                if now >= self._hold_deadline
                else f"was silent past its lease of {self.lease:g} s"
            )
            log.warning(
                "session %s %s: its transaction is rolled back and the lock released",
                self.holder.hex(),
                why,
            )
            try:
                self._engine.rollback()
            finally:
                self.release()
        timed_out = []
        if any(waiting.deadline <= now for waiting in self.queue):
            for waiting in [w for w in self.queue if w.deadline <= now]:
                self._unqueue(waiting)
                error = LockTimeout(
                    "the database stayed locked by another connection for the "
                    f"{waiting.request.wait or 0.0:g} s this request could wait"
                )
                timed_out.append((waiting, error))
        return timed_out

    def serve(self, run: Callable[[Parked], None]) -> None:
        """Run queued requests in arrival order while the lock lets them through.

        A run can take or release the lock, which changes who may go next, so the scan
        restarts after each run. A session's requests keep their order: when one of them is
        held back, so are all its later ones (the same test applies to them).
        """
        index = 0
        while index < len(self.queue):
            waiting = self.queue[index]
            if self.holder is None or waiting.request.session == self.holder:
                self._unqueue(waiting)
                run(waiting)
                index = 0
            else:
                index += 1

    def _unqueue(self, waiting: Parked) -> None:
        self._shares.release(waiting.request.session or peer_of(waiting.envelope))
        self.queue.remove(waiting)
        self.queued.pop((waiting.request.session, waiting.request.id), None)

    def close(self) -> None:
        """At shutdown: forget the holder (closing the engine rolls its transaction back)."""
        if self.holder is not None:
            log.info("rolling back the open transaction of session %s", self.holder.hex())
            self.holder = None


__all__ = ["MAX_QUEUE", "LockQueue"]
