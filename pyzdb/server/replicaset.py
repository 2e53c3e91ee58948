"""What a primary knows of its replicas: who pulled lately, how far each has applied, and the
journal records it keeps for them.

A replica's pull (``replicate`` with ``after``) is its acknowledgement (`pyzdb.server.feed`).
From those the primary knows each replica's applied seq, which gives the ``replication``
section of `info` (lag in records and in seconds, from the commit times noted each turn) and
the journal's hold: records a replica still needs are kept past `--retain-journal`, up to
`--replica-backlog`; past it, the replica starts over from a snapshot and the primary logs it.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from typing import Any

from pyzdb.engine import Engine
from pyzdb.errors import Error

log = logging.getLogger("pyzdb.feed")

#: A replica not heard from for this long is not counted (by info or `wait`).
REPLICA_GONE = 30.0
#: Replicas a primary keeps track of (and holds journal records for) at once.
MAX_REPLICAS = 64
#: A replica not heard from for this long no longer holds journal records on the primary.
REPLICA_FORGET = 3600.0
#: Records the primary keeps for one replica beyond `--retain-journal`: past this backlog the
#: replica starts over from a snapshot instead (and the primary logs it).
REPLICA_BACKLOG = 10_000_000


@dataclasses.dataclass
class ReplicaSeen:
    """What a primary knows of one replica: from its last pull."""

    name: str
    applied: int
    seen: float


class ReplicaSet:
    """The replicas one primary follows (see the module docstring)."""

    def __init__(self, engine: Engine, backlog: int = REPLICA_BACKLOG) -> None:
        self._engine = engine
        self.backlog = backlog
        self.replicas: dict[str, ReplicaSeen] = {}
        self._commits: collections.deque[tuple[int, float]] = collections.deque(maxlen=100_000)
        self._seen_seq = engine.last_seq

    def saw(self, name: str, applied: int) -> None:
        """A pull of replica `name`, which has applied up to `applied`."""
        if name not in self.replicas and len(self.replicas) >= MAX_REPLICAS:
            raise Error(f"this primary already follows {MAX_REPLICAS} replicas")
        self.replicas[name] = ReplicaSeen(name, applied, time.time())

    def note_commits(self) -> None:
        """End of a turn: remember when the newest seq was committed (for lag in seconds)."""
        last = self._engine.last_seq
        if last != self._seen_seq:
            self._commits.append((last, time.time()))
            self._seen_seq = last

    def floor(self) -> int | None:
        """The lowest seq a replica still needs (the journal keeps it), within the backlog."""
        now, last = time.time(), self._engine.last_seq
        needed = None
        for seen in list(self.replicas.values()):
            if now - seen.seen > REPLICA_FORGET:
                del self.replicas[seen.name]
            elif last - seen.applied > self.backlog:
                log.warning(
                    "replica %s is %d records behind, past the backlog of %d kept for "
                    "it: it will start over from a snapshot",
                    seen.name,
                    last - seen.applied,
                    self.backlog,
                )
            elif needed is None or seen.applied < needed:
                needed = seen.applied
        return None if needed is None else max(0, needed - 1)  # its last record: the crc

    def info(self, history: str | None) -> dict[str, Any]:
        """The ``replication`` section of a primary's info."""
        now, last = time.time(), self._engine.last_seq
        replicas = []
        for seen in self.replicas.values():
            if now - seen.seen > REPLICA_GONE:
                continue
            behind = next((when for seq, when in self._commits if seq > seen.applied), None)
            replicas.append(
                {
                    "name": seen.name,
                    "applied_seq": seen.applied,
                    "lag_records": max(0, last - seen.applied),
                    "lag_seconds": 0.0 if behind is None else max(0.0, now - behind),
                    "last_seen": seen.seen,
                }
            )
        return {"role": "primary", "history": history, "seq": last, "replicas": replicas}


__all__ = ["MAX_REPLICAS", "REPLICA_BACKLOG", "ReplicaSeen", "ReplicaSet"]
