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
import os
import threading
from collections.abc import Callable

from pyzdb.errors import Error
from pyzdb.storage.format import SEGMENT_HEADER, segment_path
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
    #: End of the open segment (after the newest frame), and how far of it an fdatasync is
    #: known to have covered (with `_durable_seq`). Every record past the durable seq lies in
    #: the open segment: a new segment starts only after the old one was fsynced.
    _end: int
    _durable_end: int
    #: Seq of the newest record known to be on disk (`Durability` advances it).
    _durable_seq: int
    #: Why appends are refused (a failed write or fsync), None while the journal works.
    _broken: BaseException | None
    #: Set by a failed fsync: the seq of the newest durable record. The records after it were
    #: cut off the segment (`_cut_undurable`) and must be taken out of memory by the owner,
    #: who then calls `rewind()`.
    _lost_after: int | None
    #: The error of cutting those records off, if that failed too (a restart may replay them).
    _cut_error: OSError | None
    #: Who must act for writes to work again, for the refusal's message.
    reopen_hint: str

    @property
    def last_seq(self) -> int:
        """Seq of the newest record (0 for an empty journal); the next append gets +1."""
        return self._last_seq

    @property
    def lost_after(self) -> int | None:
        """After a failed fsync, the seq of the newest durable record (the ones after it were
        cut off the journal); None otherwise."""
        return self._lost_after

    @property
    def failure(self) -> str | None:
        """Why writes are refused (a failed write or fsync, and whether cutting the records
        that were not durable failed too); None while the journal accepts writes."""
        if self._broken is None:
            return None
        what = "write a record" if self._lost_after is None else "make writes durable"
        reason = f"the journal could not {what}: {self._broken}"
        if self._cut_error is not None:
            reason += (
                f"; cutting the records that were not durable off the journal failed too "
                f"({self._cut_error}): a restart may replay them"
            )
        return reason

    def rewind(self) -> None:
        """After a failed fsync, end the journal at its newest durable record (`lost_after`):
        the owner calls this once it took the records after it out of memory."""
        with self._mutex:
            if self._lost_after is not None:
                self._last_seq = min(self._last_seq, self._lost_after)

    def _check_writable(self) -> None:
        if self._broken is not None:
            raise Error(f"writes are refused until {self.reopen_hint}: {self.failure}")
        if self._state != "ready":
            raise Error(
                {
                    "opened": "call recover() and apply its records before writing",
                    "recovering": "finish iterating the records of recover() before writing",
                    "closed": "the journal is closed",
                }[self._state]
            )

    def _break(self, exc: OSError, what: str) -> Error:
        """Refuse every later write (as Redis does when persistence fails); the error to raise.

        The caller holds the mutex. A failed write leaves the records before it as they are
        (an fsync may still make them durable), minus its own partial frame. A failed fsync is
        never retried (PostgreSQL's "fsyncgate": after Linux reports a writeback error, the
        page cache no longer tells what is on disk): every record after the durable one is cut
        off the segment, so that no restart replays a write whose client was told it failed.
        """
        if self._broken is None:
            self._broken = exc
        log.error("journal %s failed, refusing further writes: %s", what, exc)
        if what == "write":
            self._cut_to(self._end, durably=False)
        elif self._lost_after is None:
            self._lost_after = self._durable_seq
            self._cut_to(self._durable_end, durably=True)
            self._recent = collections.deque(r for r in self._recent if r[0] <= self._durable_seq)
            self._recent_size = sum(r[2] for r in self._recent)
        return Error(f"journal {what} failed ({exc}); writes are refused until {self.reopen_hint}")

    def _cut_to(self, offset: int, durably: bool) -> None:
        """Truncate the open segment to `offset` (mutex held), `durably` with an fsync.

        A failed write's partial frame is only a torn tail, which recovery would cut anyway;
        records that were not durable must go for good, and a failure to cut them is logged and
        kept for `failure`, since a restart may then replay them.
        """
        if self._fd is None:
            return
        try:
            if os.fstat(self._fd).st_size > offset:
                os.ftruncate(self._fd, offset)
                if durably:
                    os.fsync(self._fd)
        except OSError as exc:
            if not durably:
                log.warning("journal: cutting a partial frame failed (%s); recovery will", exc)
                return
            self._cut_error = exc
            log.critical(
                "journal: cutting %s back to %d bytes failed (%s): a restart may replay records "
                "that were not durable",
                segment_path(self.directory, self._segment_first),
                offset,
                exc,
            )

    def _start_segment(self, first: int) -> None:
        """Create `journal-<first>.log` complete (rule 1) and make it the open segment."""
        self._fd = new_segment(segment_path(self.directory, first))
        self._segment_first = first
        self._end = self._durable_end = SEGMENT_HEADER.size
