"""What the server remembers per session: the replies it sent (at-most-once) and the requests
the supervisor quarantined.

A repeat of a `(session, id)` already answered gets the remembered reply: the client's
lazy-pirate retry resends the same id, and a write must not run twice. The reply cache lives
in memory (`pyzdb.server.fairness.FairReplyCache`), and is seeded at start from the `(session,
request id, result)` journalled with each committed write (`pyzdb.storage.history`): a write
whose reply was lost *and* whose server then crashed is answered from the journal when
retried, not run again. A request that killed or hung a worker is answered with the
quarantine's error, never run again (`pyzdb.server.supervisor`).
"""

from __future__ import annotations

from typing import Any

from pyzdb.engine import Engine
from pyzdb.errors import Error
from pyzdb.net.messages import Request
from pyzdb.server.fairness import FairReplyCache as ReplyCache
from pyzdb.storage.history import seed_reply_cache

#: Ops that neither write nor hold state: their replies are not worth remembering when large.
_READ_OPS = frozenset({"query", "history", "blob", "ping", "info"})
#: Ops whose replies are never remembered: pings and the stream ops, which a client repeats
#: with new arguments rather than retries (their replies would evict those of writes).
_UNCACHED = frozenset({"ping", "watch", "replicate", "snapshot", "info"})


class SessionMemory:
    """The reply cache, seeded from the journal, and the supervisor's quarantine."""

    def __init__(self, engine: Engine) -> None:
        self.cache = ReplyCache()
        seed_reply_cache(self.cache, engine)
        #: The reply already sent to a (session, id), if it is remembered. The cache's own
        #: `get`, not a method wrapping it: it runs for every request with a session.
        self.recall = self.cache.get
        #: (session, request id) -> `supervisor.Quarantined`: set by the supervised worker.
        self.quarantine: dict[tuple[bytes, int], Any] = {}

    def quarantined(self, key: tuple[bytes, int]) -> Error:
        """The error for a resend of a quarantined request (`key in quarantine`)."""
        return Error(self.quarantine[key].message())

    def remember(self, request: Request, data: bytes) -> None:
        """Keep a reply for a retry of `request`, unless it is not worth it (see above)."""
        if (
            request.session
            and request.op not in _UNCACHED
            and not (request.op in _READ_OPS and len(data) > self.cache.max_bytes // 64)
        ):
            self.cache.put((request.session, request.id), data)


__all__ = ["ReplyCache", "SessionMemory"]
