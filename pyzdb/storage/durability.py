"""The fsync policy: when appended records reach the disk, and how far they are known to have.

Three policies (`FsyncPolicy`): ``always`` fdatasyncs before an append returns, or, with
``sync=False``, once for a group of appends at `Durability.sync` (group commit); ``everysec``
leaves it to a background thread, at most once per `Durability.everysec_interval`; ``no``
leaves it to the kernel (and `Journal.close`). `durable_seq` says how far an fdatasync is
known to have covered, whatever the policy: replies that depend on a record wait for it.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Literal, cast

from pyzdb.errors import Error
from pyzdb.storage.journalcore import JournalCore

__all__ = ["FSYNC_POLICIES", "Durability", "FsyncPolicy"]

FsyncPolicy = Literal["always", "everysec", "no"]
FSYNC_POLICIES: tuple[FsyncPolicy, ...] = ("always", "everysec", "no")


class Durability(JournalCore):
    """The journal's fsync policy (see the module); a part of `Journal`."""

    #: Seconds between background fsyncs under the `everysec` policy.
    everysec_interval = 1.0

    fsync: FsyncPolicy
    #: Seq of the newest record known to be on disk (<= `_last_seq`): an fdatasync that
    #: covered it has returned. Replies that depend on a record wait for it (`durable_seq`).
    _durable_seq: int
    _fsync_times: collections.deque[float]
    _stop: threading.Event
    _flusher: threading.Thread | None

    def sync(self) -> None:
        """Under `always`, fsync the appends made with `sync=False`; otherwise the policy's job.

        On return every record appended before the call is durable (`durable_seq` covers it).
        The fdatasync runs outside the mutex (`_claim`, `_sync_claimed`), so other threads keep
        appending meanwhile (group commit with a sync thread: the next batch is evaluated and
        appended while this one reaches the disk).
        """
        with self._mutex:
            # A failed write leaves the records before it intact: they may still be synced.
            if self._lost_after is not None or self._state != "ready":
                self._check_writable()
            if self.fsync != "always":
                return
            claim = self._claim()
        if claim is not None:
            self._sync_claimed(*claim)

    @property
    def fsync_seconds(self) -> float:
        """What an fdatasync of the journal costs on this disk: the shortest of the last 16
        (0.0 before the first). The shortest, because a busy CPU only ever adds to the time a
        syncing thread takes to come back; the disk's own latency is the floor."""
        return min(self._fsync_times, default=0.0)

    @property
    def durable_seq(self) -> int:
        """Seq of the newest record known to be on disk: an fdatasync that covered it returned.

        Under `everysec` and `no` it trails `last_seq` by the policy's lag. A reader of another
        thread sees it only grow.
        """
        return self._durable_seq

    def _sync_locked(self) -> None:
        """Fdatasync the open segment unless every record is known durable.

        A `sync()` in flight on another thread does not count: its fdatasync may not have
        returned, and a checkpoint must not start a new segment before the old one is on disk.
        """
        if self._durable_seq >= self._last_seq:
            return
        started = time.perf_counter()
        try:
            os.fdatasync(cast(int, self._fd))  # records to sync: the segment is open
        except OSError as exc:
            raise self._break(exc, "fsync") from exc
        self._time_fsync(started)
        self._durable_seq, self._durable_end = self._last_seq, self._end

    def _advance(self, target: int, target_end: int) -> None:
        """An fdatasync that covered up to `target` (ending at `target_end`) returned (mutex
        held). A failure on another thread meanwhile wins: what it cut stays lost."""
        if target > self._durable_seq and self._lost_after is None:
            self._durable_seq, self._durable_end = target, target_end

    def _time_fsync(self, started: float) -> None:
        self._fsync_times.append(time.perf_counter() - started)

    def _claim(self) -> tuple[int, int, int] | None:
        """(Mutex held.) What an fdatasync outside the mutex must cover: a duplicate of the open
        segment's descriptor, and the seq and end offset of its newest record; None when every
        record is known durable.

        The duplicate lets appends go on during the fdatasync, and a checkpoint switch
        segments and close the original meanwhile (it fsyncs the old segment itself first,
        under the mutex, so rule 1 holds either way). When no duplicate can be had (EMFILE:
        the process is out of descriptors), that says nothing about the data, so it is no
        failed fsync: the segment's own descriptor is fdatasynced here, under the mutex
        (appends wait for this one), and a failure of *that* breaks the journal as any other.
        """
        if self._durable_seq >= self._last_seq:
            return None
        try:
            fd = os.dup(cast(int, self._fd))  # records to sync: the segment is open
        except OSError:
            self._sync_locked()
            return None
        return fd, self._last_seq, self._end

    def _sync_claimed(self, fd: int, target: int, target_end: int) -> None:
        """Fdatasync a `_claim` (without the mutex) and advance `durable_seq` to it; closes `fd`.
        A failure breaks the journal (`_break`) and raises its error."""
        started = time.perf_counter()
        try:
            os.fdatasync(fd)
        except OSError as exc:
            with self._mutex:
                raise self._break(exc, "fsync") from exc
        finally:
            os.close(fd)
        self._time_fsync(started)
        with self._mutex:
            self._advance(target, target_end)

    def _flush_every_second(self) -> None:
        """The `everysec` thread: fsync at most once per interval, only when there is news.

        A failure breaks the journal (`_break` logs it); the owner finds it in `lost_after`.
        """
        while not self._stop.wait(self.everysec_interval):
            try:
                with self._mutex:
                    if self._lost_after is not None or self._fd is None:
                        continue
                    claim = self._claim()
                if claim is not None:
                    self._sync_claimed(*claim)
            except Error:
                continue
