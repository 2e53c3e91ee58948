"""Reading the journal back while it grows: `records_since` for change feeds and replicas.

A reader near the end (a replica or a change feed keeping up) is served from an in-memory tail
of the newest appended records; one further behind, from the segments, decoded in batches with
the cyclic GC paused. What stays readable after a checkpoint is decided by retention
(`Journal.retain`, `Journal.hold`: see `pyzdb.storage.checkpoints`).
"""

from __future__ import annotations

import itertools
import mmap
from collections.abc import Iterator, Sequence
from typing import IO

from pyzdb.errors import Error
from pyzdb.gcpause import gc_paused
from pyzdb.storage.format import SEGMENT_HEADER, list_segments
from pyzdb.storage.frames import check_segment_header, decode_frames
from pyzdb.storage.journalcore import JournalCore

__all__ = ["Tail", "read_records"]


class Tail(JournalCore):
    """The in-memory tail and `records_since` (see the module); a part of `Journal`."""

    #: Bounds of the in-memory tail of recent records (see `JournalCore._recent`).
    recent_bytes = 16 * 1024 * 1024
    recent_records = 65536

    def _remember(self, seq: int, record: object, size: int) -> None:
        recent = self._recent
        recent.append((seq, record, size))
        self._recent_size += size
        while self._recent_size > self.recent_bytes or len(recent) > self.recent_records:
            self._recent_size -= recent.popleft()[2]

    def records_since(self, seq: int) -> Iterator[tuple[int, object]]:
        """Yield `(seq, record)` for every record after `seq` up to `last_seq` at call time.

        For a replica catching up. Records not yet fsynced (policy `everysec`/`no`) are
        included: a replica may be ahead of the primary's disk, as with any asynchronous
        replication. Raises `Error` if a checkpoint already dropped some of those records:
        the replica must then start again from a checkpoint.
        """
        if seq < 0:
            raise ValueError(f"seq must be >= 0, not {seq}")
        with self._mutex:
            if self._state != "ready":
                raise Error(f"records_since() needs a recovered, open journal ({self._state})")
            end = self._last_seq
            if seq >= end:
                return iter(())
            segments = list_segments(self.directory)
            if segments[0][0] > seq + 1:
                raise Error(
                    f"records after seq {seq} were dropped by a checkpoint (the journal now "
                    f"starts at seq {segments[0][0]}): resynchronise from a checkpoint"
                )
            recent = self._recent
            if recent and recent[0][0] <= seq + 1:
                skip = seq + 1 - recent[0][0]
                return iter(
                    [(found, record) for found, record, _ in itertools.islice(recent, skip, None)]
                )
            start = max(i for i, (first, _) in enumerate(segments) if first <= seq + 1)
            # Open every file now: a checkpoint may delete them while the caller iterates.
            handles = [(first, path, open(path, "rb")) for first, path in segments[start:]]
        return read_records(handles, seq, end, self.directory)

    @property
    def first_seq(self) -> int:
        """Seq of the oldest record `records_since` can still return (last_seq + 1: none)."""
        with self._mutex:
            segments = list_segments(self.directory)
            return segments[0][0] if segments else self._last_seq + 1


def read_records(
    handles: Sequence[tuple[int, str, IO[bytes]]], seq: int, end: int, directory: str
) -> Iterator[tuple[int, object]]:
    """Yield the records after `seq` up to `end` from the open segments `handles`, in order,
    and close them; `Error` if one is missing (the journal changed under the reader)."""
    expect = handles[0][0]
    try:
        for first, path, handle in handles:
            if first != expect or expect > end:
                break
            size = check_segment_header(handle, path)
            if size == SEGMENT_HEADER.size:
                continue
            with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                with memoryview(mapped) as view:
                    pos, problem = SEGMENT_HEADER.size, None
                    while pos < size and expect <= end and not problem:
                        with gc_paused:
                            batch, pos, expect, problem = decode_frames(
                                view, pos, expect, seq, path
                            )
                        yield from (item for item in batch if item[0] <= end)
    finally:
        for _, _, handle in handles:
            handle.close()
    if expect <= end:
        raise Error(
            f"journal record seq {expect} could not be read back (journal directory "
            f"{directory}): the journal changed under the reader"
        )
