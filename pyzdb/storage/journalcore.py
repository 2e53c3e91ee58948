"""What every part of the journal shares: its state, the write gate, breaking, new segments.

`pyzdb.storage.journal.Journal` is assembled from parts with one job each, all derived from
`JournalCore`: the fsync policy (`durability.Durability`), recovery (`recovery.Recovery`),
checkpoints (`checkpoints.Checkpointing`) and reading records back for change feeds and
replicas (`tail.Tail`). `JournalCore` declares the state they share, which `Journal.__init__`
sets up, and the helpers more than one part calls. Every method that touches the state takes
the journal's mutex (or says that its caller holds it).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from pyzdb.errors import Error
from pyzdb.storage.format import segment_path
from pyzdb.storage.frames import new_segment

__all__ = ["JournalCore", "log"]

#: The journal's logger, one name for all its parts.
log = logging.getLogger("pyzdb.journal")


class JournalCore:
    """The journal's shared state and helpers (see the module); not used on its own."""

    directory: str
    #: At least this many of the newest records stay readable (`records_since`) after a
    #: checkpoint, with a checkpoint at or before the first of them (change feeds and
    #: replicas resume from there; see `Checkpointing`).
    retain: int
    #: Set by recovery when it cut a torn tail: records were lost, so a history id built
    #: on this journal must change (replicas that saw them start over).
    cut_tail: bool
    #: Set by a primary: the lowest seq a replica still needs (None: none), kept like
    #: retention as long as it asks (see `pyzdb.server.feed.Hub.replica_floor`).
    hold: Callable[[], int | None] | None
    #: The newest records as appended, `(seq, record, payload size)`, at most
    #: `recent_bytes` of payload: `records_since` serves a reader near the end (a replica
    #: or change feed keeping up) from here instead of decoding the segment again.
    _recent: collections.deque[tuple[int, object, int]]
    _recent_size: int
    _lock_fd: int
    _mutex: threading.Lock
    _state: str  # "opened" -> "recovering" -> "ready" -> "closed"
    _fd: int | None  # the last segment, open for appending once ready
    _segment_first: int  # first seq the open segment holds (or will hold)
    _last_seq: int
    _broken: BaseException | None

    @property
    def last_seq(self) -> int:
        """Seq of the newest record (0 for an empty journal); the next append gets +1."""
        return self._last_seq

    def _check_writable(self) -> None:
        if self._broken is not None:
            raise Error(
                f"the journal refuses writes since a write or fsync failed ({self._broken}): "
                "restart to recover from what is on disk"
            )
        if self._state != "ready":
            raise Error(
                {
                    "opened": "call recover() and apply its records before writing",
                    "recovering": "finish iterating the records of recover() before writing",
                    "closed": "the journal is closed",
                }[self._state]
            )

    def _break(self, exc: OSError, what: str) -> Error:
        """Refuse every later write (as Redis does when persistence fails); the error to raise."""
        self._broken = exc
        log.error("journal %s failed, refusing further writes: %s", what, exc)
        return Error(f"journal {what} failed, no further writes are accepted: {exc}")

    def _start_segment(self, first: int) -> None:
        """Create `journal-<first>.log` complete (rule 1) and make it the open segment."""
        self._fd = new_segment(segment_path(self.directory, first))
        self._segment_first = first
