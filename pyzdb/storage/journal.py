"""The write-ahead journal: checksummed records, an fsync policy, checkpoints and recovery.

The journal stores opaque *records* (plain marshal-able values; the engine decides what they
mean) under contiguous sequence numbers, and *checkpoints* (one payload that stands for every
record up to a sequence number). It never interprets either.

Theory of operation
-------------------
The files and their layout are in `pyzdb.storage.format`: segments of checksummed frames,
appended in place, and checkpoint files. Two rules keep every crash recoverable:

1. Only the last frame of the last segment can ever be half-written, because a new file is
   born complete (written as `*.tmp`, fsynced, renamed, directory fsynced) and the previous
   segment is fsynced before a new one starts. So recovery may cut a bad frame at the end of
   the last segment, and nowhere else: a bad frame followed by any valid later frame is
   corruption of acknowledged data, and recovery stops with an error rather than drop it.
2. A checkpoint replaces the journal only once it is durable, and the previous recovery
   point (an older checkpoint, or the empty start) stays on disk with the journal after it.
   So a corrupt newest checkpoint falls back to that point plus replay, never to less.

Recovery = newest valid checkpoint + lazy replay of the records after it; after that,
`append` continues at the next sequence number in the last segment.

`Journal` is assembled from parts, one job each (see `pyzdb.storage.journalcore`): opening,
appending and closing are here; the fsync policy in `durability`, recovery in `recovery`,
checkpoints in `checkpoints`, reading back for feeds and replicas in `tail`.
"""

from __future__ import annotations

import collections
import marshal
import os
import threading
from typing import cast

from pyzdb.errors import Error
from pyzdb.storage.checkpoints import Checkpointing
from pyzdb.storage.durability import FSYNC_POLICIES, FsyncPolicy
from pyzdb.storage.files import fsync_directory, lock_directory, write_all
from pyzdb.storage.format import MARSHAL_VERSION, MAX_PAYLOAD
from pyzdb.storage.frames import encode_frame
from pyzdb.storage.recovery import Recovery
from pyzdb.storage.tail import Tail

__all__ = ["Journal"]


class Journal(Recovery, Checkpointing, Tail):
    """One data directory's journal and checkpoints, owned by this object until `close()`.

    Usage: `payload, records = journal.recover()`, apply `payload` (None when there is no
    checkpoint yet) then every `(seq, record)` of `records`, then `append`/`checkpoint`.
    Appending before `records` is exhausted is refused: only the end of replay knows where
    the journal ends. Methods may be called from several threads (a mutex serialises them;
    `sync()` waits for the disk outside it, so a sync thread never blocks appends); the caller
    must not append while a `checkpoint(payload)` is taken, since `payload` must be the state
    as of `last_seq`. `durable_seq` says how far the disk is known to have got.
    """

    def __init__(
        self, directory: str | os.PathLike[str], fsync: FsyncPolicy = "always", retain: int = 0
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be 'always', 'everysec' or 'no', not {fsync!r}")
        self.directory = os.fspath(directory)
        self.fsync = fsync
        self.retain = retain
        self.cut_tail = False
        self.hold = None
        self._recent = collections.deque()
        self._recent_size = 0
        try:
            os.makedirs(self.directory)
        except FileExistsError:
            pass
        else:  # a new directory must survive a crash as well as the files in it
            fsync_directory(os.path.dirname(os.path.abspath(self.directory)))
        self._lock_fd = lock_directory(self.directory)
        self._mutex = threading.Lock()
        self._state = "opened"
        self._fd = None
        self._segment_first = 0
        self._last_seq = 0
        self._durable_seq = 0
        self._end = self._durable_end = 0
        self._lost_after = None
        self._cut_error = None
        self.reopen_hint = "the database is reopened"
        self._fsync_times = collections.deque(maxlen=16)
        self._broken = None
        self._stop = threading.Event()
        self._flusher = None
        if fsync == "everysec":
            self._flusher = threading.Thread(
                target=self._flush_every_second, name="pyzdb-journal-fsync", daemon=True
            )
            self._flusher.start()

    def append(self, record: object, sync: bool = True) -> int:
        """Write `record` as the next frame and return its seq.

        Under `always`, returns only once the record is on disk (fdatasync) unless
        `sync=False`: then the caller groups appends and calls `sync()` once (group commit).
        Under `everysec`/`no` the policy decides when to fsync. A failed write or fsync
        refuses every later append until the journal is reopened (see `JournalCore._break`:
        a failed fsync also cuts the records that were not durable off the segment).
        """
        try:
            # ignore: the stub lists what marshal writes; refusing the rest is the contract
            payload = marshal.dumps(record, MARSHAL_VERSION)  # type: ignore[arg-type]
        except ValueError as exc:
            raise TypeError(f"a journal record must be plain marshal-able data: {exc}") from None
        size = len(payload)
        if size > MAX_PAYLOAD:
            raise Error(f"a journal record is limited to {MAX_PAYLOAD} bytes, got {size}")
        with self._mutex:
            if self._state != "ready" or self._broken is not None:  # one test on the hot path
                self._check_writable()
            seq = self._last_seq + 1
            frame = encode_frame(seq, payload)
            try:
                write_all(cast(int, self._fd), frame)
            except OSError as exc:
                raise self._break(exc, "write") from exc
            self._end += len(frame)
            self._last_seq = seq
            self._remember(seq, record, size)
            if sync and self.fsync == "always":
                self._sync_locked()
            return seq

    def close(self) -> None:
        """Fsync what is pending (every policy), stop the flusher, release the directory."""
        with self._mutex:
            if self._state == "closed":
                return
            self._state = "closed"
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
        with self._mutex:
            try:
                if (
                    self._fd is not None
                    and self._durable_seq < self._last_seq
                    and self._lost_after is None
                ):
                    self._sync_locked()
            finally:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                os.close(self._lock_fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
