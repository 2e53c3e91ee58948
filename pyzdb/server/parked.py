"""A request held back until something happens or its wait runs out.

Two parts of the server hold requests back: the lock queue (`pyzdb.server.lockqueue`: another
session holds the lock) and the hub (`pyzdb.server.feed`: a long poll waits for a journal seq).
Both keep the same record, so both answer a resend the same way: a client's lazy-pirate retry
of the same (session, id) over a new connection only swaps `envelope`, and the one reply goes
where the client listens now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyzdb.net.messages import Request

if TYPE_CHECKING:
    from pyzdb.server.auth import Grant


@dataclass
class Parked:
    """A request that waits, with all it needs to run later, and when its wait ends."""

    envelope: list[bytes]
    request: Request
    #: The key's role and scope of a keyed request (`ServerAuth.admit`), else None.
    grant: Grant | None
    #: Monotonic time at which the wait ends: the lock queue then answers LockTimeout, the
    #: hub answers what it has.
    deadline: float
    #: The hub's only: the seq the request waits to see exceeded (watch, replicate) or
    #: `reached` (a read with `min_seq` on a replica).
    seq: int = 0
    reached: bool = False
    #: The request's frame as it arrived, for the supervisor's page when it runs.
    frame: bytes = b""


__all__ = ["Parked"]
