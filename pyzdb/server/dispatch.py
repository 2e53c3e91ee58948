"""One message's way through the server, from its frames to its reply in the outbox.

recv (`pyzdb.server.router`) -> decode (`pyzdb.net.messages`; a bad frame gets an error reply,
is logged, throttled, and changes nothing) -> auth (`ServerAuth.admit`: the key's role, its
session bound to it) -> session memory (a repeat of an answered or quarantined request) -> the
hub (long polls, journal-only ops) -> the lock queue (another session holds the lock: wait) ->
the op, through tenancy for a keyed request (`pyzdb.server.tenancy`) -> the engine -> the
outbox (`pyzdb.server.outbox`), which sends the reply once what it may reflect is durable.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING, Any

from pyzdb.codec import Encoded
from pyzdb.errors import AuthenticationError, ProtocolError, SecurityError
from pyzdb.net.errorinfo import error_to_info
from pyzdb.net.messages import Reply, Request, decode_request, pack, pack_value_reply, request_id_of
from pyzdb.sandbox import release_leftovers
from pyzdb.server.parked import Parked
from pyzdb.server.redact import Redactor
from pyzdb.server.requestlog import WARNINGS_PER_SECOND, Throttle, log_failure, log_request
from pyzdb.server.router import FRONT_ID, peer_of, split_envelope
from pyzdb.server.tenancy import Tenancy

if TYPE_CHECKING:
    from pyzdb.server.auth import Grant
    from pyzdb.server.loop import Server

log = logging.getLogger("pyzdb.server")


class Dispatcher:
    """Handles each message of a `Server` (see the module docstring for the way it takes)."""

    def __init__(self, server: Server, budget_time: float) -> None:
        self._engine = server.engine
        self._max_message = server.config.max_message
        self._auth = server.auth
        self._sessions = server.sessions
        self._hub = server.hub
        self._locks = server.locks
        self._ops = server.ops
        self._outbox = server.outbox
        self._stats = server.stats
        self._tenancy = Tenancy(server)
        self._redact = Redactor(server.config.data)
        self._bad = Throttle(WARNINGS_PER_SECOND)
        self._budget_time = budget_time
        #: Behind `--front`: the front's identity, the routing frame before a client's (the
        #: worker's other peers, a shadow following its journal, come without it).
        self._front = FRONT_ID if server.config.behind_front else None
        #: Set by the supervisor's worker (`pyzdb.server.supervisor`): the page it watches.
        self.inflight: Any = None

    def handle(self, frames: list[bytes]) -> None:
        """One message as the ROUTER gave it: routing envelope, then one request frame."""
        hops = 1 if self._front is not None and frames[0] == self._front else 0
        if len(frames) == 2 + hops and frames[-1]:  # identity + frame: a pyzdb client
            envelope, body = frames[:-1], frames[-1]
        else:
            envelope, rest = split_envelope(frames[hops:] if hops else frames)
            if hops:
                envelope = frames[:1] + envelope
            if len(rest) != 1:
                self.refuse(
                    envelope,
                    0,
                    ProtocolError(
                        f"expected one message frame after the routing envelope, got {len(rest)}"
                    ),
                )
                return
            body = rest[0]
        grant: Grant | None = None
        try:
            request = decode_request(body, self._max_message)
            if self._auth is not None:
                request, grant = self._auth.admit(frames, request)
        except (ProtocolError, AuthenticationError, SecurityError) as exc:
            self.refuse(envelope, request_id_of(body), exc)
            return
        if request.session and self._answered(envelope, request):
            return
        if self._sessions.killers:
            refusal = self._sessions.killer(request)
            if refusal is not None:
                self.fail(envelope, request, refusal)
                return
        if self._hub.intercept(envelope, request, grant, body):
            return
        locks = self._locks
        if locks.holder is None or locks.lets_through(request):
            self.run(envelope, request, grant, body)
            if locks.holder is None and locks.queue:
                locks.serve(self.run_parked)
            return
        refusal = locks.enqueue(envelope, request, grant, body)
        if refusal is not None:
            self.fail(envelope, request, refusal)

    def _answered(self, envelope: list[bytes], request: Request) -> bool:
        """Is this a repeat (same session and id) the server already has in hand? Then it is
        answered from memory, refused (quarantined), or its queued original will answer on
        this new connection."""
        key = (request.session, request.id)
        sessions = self._sessions
        cached = sessions.recall(key)
        if cached is not None:
            log.debug(
                "repeat of request %d of session %s: answered from the reply cache",
                request.id,
                request.session.hex(),
            )
            self._outbox.hold((self._engine.last_seq, envelope, request.id, cached))
            return True
        if key in sessions.quarantine:
            self.fail(envelope, request, sessions.quarantined(key))
            return True
        waiting = self._locks.waiting(key)
        if waiting is not None:  # a retry over a new connection: answer there
            waiting.envelope = envelope
            return True
        return False

    def refuse(self, envelope: list[bytes], request_id: int, exc: Exception) -> None:
        """A message that is no valid request (or from a key that may not send it)."""
        self._bad.warning("bad message from peer %s: %s", peer_of(envelope).hex(), exc)
        self._queue_reply(
            envelope,
            None,
            pack(Reply(request_id, False, None, self._engine.last_seq, error_to_info(exc))),
        )

    def run_parked(self, parked: Parked) -> None:
        self.run(parked.envelope, parked.request, parked.grant, parked.frame)

    def run(
        self,
        envelope: list[bytes],
        request: Request,
        grant: Grant | None = None,
        frame: bytes = b"",
    ) -> None:
        """Run one request on the engine and queue its reply (remembered for retries); a
        keyed request (`grant`: its key's role and scope) goes through tenancy. `frame`, the
        request as it arrived, goes to the supervisor's page with it."""
        session = request.session
        locks = self._locks
        if session and session == locks.holder:
            locks.renew()
        started = time.perf_counter()
        outcome = "ok"
        try:
            if request.txn and session != locks.holder:
                raise locks.lost()
            run = (
                self._ops[request.op]
                if grant is None
                else functools.partial(self._tenancy.run, grant)
            )
            if self.inflight is not None and request.op in ("query", "execute"):
                self.inflight.enter(
                    session,
                    request.id,
                    peer_of(envelope),
                    request.op,
                    self._budget_time,
                    frame,
                )
                try:
                    value = run(request, request.params)
                finally:
                    self.inflight.leave()
                    release_leftovers()
            else:
                value = run(request, request.params)
            if type(value) is Encoded:  # query and execute: no Reply object to build
                data = pack_value_reply(request.id, value, self._engine.last_seq)
            else:
                data = pack(Reply(request.id, True, value, self._engine.last_seq))
        except Exception as exc:
            outcome = log_failure(self._bad, request, exc)
            data = pack(
                Reply(
                    request.id,
                    False,
                    None,
                    self._engine.last_seq,
                    error_to_info(self._redact(exc)),
                )
            )
        self._stats.record(session, outcome)
        if log.isEnabledFor(logging.DEBUG):
            log_request(request, data, started, outcome)
        if session and session == locks.holder:
            locks.renew()
        self._queue_reply(envelope, request, data)

    def fail(self, envelope: list[bytes], request: Request, error: Exception) -> None:
        """Answer `request` with `error` without running it (remembered for retries)."""
        reply = Reply(request.id, False, None, self._engine.last_seq, error_to_info(error))
        self._queue_reply(envelope, request, pack(reply))

    def _queue_reply(self, envelope: list[bytes], request: Request | None, data: bytes) -> None:
        """Queue a reply until the writes it may reflect are durable; remember it for a retry
        of the request."""
        if request is not None:
            self._sessions.remember(request, data)
        self._outbox.hold((self._engine.last_seq, envelope, request.id if request else 0, data))


__all__ = ["Dispatcher"]
