"""The write-ahead journal: checksummed records, an fsync policy, checkpoints and recovery.

The journal stores opaque *records* (plain marshal-able values; the engine decides what they
mean) under contiguous sequence numbers, and *checkpoints* (one payload that stands for every
record up to a sequence number). It never interprets either.

Theory of operation
-------------------
Files in the data directory::

    LOCK                                  flock'ed by the one process that owns the directory
    journal-<first seq, 20 digits>.log    a segment: header, then frames, appended in place
    checkpoint-<seq, 20 digits>.ckpt      a checkpoint covering every record up to <seq>

A segment starts with `_SEGMENT_HEADER` (magic, format version); each record is one frame
`[payload length u32][crc32 of seq+payload u32][seq u64][payload = marshal.dumps(record, 4)]`.
A checkpoint is `_CHECKPOINT_HEADER` (magic, version, seq, body length, crc32 of the body)
followed by the body, `marshal.dumps(payload, 4)`.

Two rules keep every crash recoverable:

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
"""

from __future__ import annotations

import collections
import fcntl
import itertools
import logging
import marshal
import mmap
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Generator, Iterator
from typing import IO, Literal

from pyzdb.errors import Error
from pyzdb.gcpause import gc_paused

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "everysec", "no"]

#: Bumped when the layout of segments, frames or checkpoints changes.
FORMAT_VERSION = 1

_SEGMENT_HEADER = struct.Struct("<8sI")  # magic, format version
_SEGMENT_MAGIC = b"PYZDBLOG"
_CHECKPOINT_HEADER = struct.Struct("<8sIQQI")  # magic, version, seq, body length, crc32(body)
_CHECKPOINT_MAGIC = b"PYZDBCKP"
_FRAME = struct.Struct("<IIQ")  # payload length, crc32(seq + payload), seq
_LENGTH_CRC = struct.Struct("<II")
_SEQ = struct.Struct("<Q")
_SMALLEST_FRAME = _FRAME.size + 1  # marshal never writes an empty payload
_MARSHAL_VERSION = 4
_MAX_PAYLOAD = 0xFFFFFFFF
_SEGMENT_NAME = re.compile(r"journal-(\d{20})\.log")
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d{20})\.ckpt")
_TEMP_NAME = re.compile(r"(journal-\d{20}\.log|checkpoint-\d{20}\.ckpt)\.tmp")
#: Records decoded per pause of the cyclic GC: large enough to amortise the pause, small
#: enough that replay stays lazy (memory is bounded by one batch, not the journal).
_BATCH = 4096


class Journal:
    """One data directory's journal and checkpoints, owned by this object until `close()`.

    Usage: `payload, records = journal.recover()`, apply `payload` (None when there is no
    checkpoint yet) then every `(seq, record)` of `records`, then `append`/`checkpoint`.
    Appending before `records` is exhausted is refused: only the end of replay knows where
    the journal ends. Methods may be called from several threads (a mutex serialises them;
    `sync()` waits for the disk outside it, so a sync thread never blocks appends); the caller
    must not append while a `checkpoint(payload)` is taken, since `payload` must be the state
    as of `last_seq`. `durable_seq` says how far the disk is known to have got.
    """

    #: Recovery points kept on disk, each with the journal after it: the newest checkpoint,
    #: and the ones it falls back to when it turns out corrupt. The empty start (seq 0) counts
    #: as a recovery point while the journal still reaches back to seq 1.
    keep_checkpoints = 2
    #: Seconds between background fsyncs under the `everysec` policy.
    everysec_interval = 1.0
    #: Bounds of the in-memory tail of recent records (see `_recent`).
    recent_bytes = 16 * 1024 * 1024
    recent_records = 65536

    def __init__(
        self, directory: str | os.PathLike[str], fsync: FsyncPolicy = "always", retain: int = 0
    ) -> None:
        if fsync not in ("always", "everysec", "no"):
            raise ValueError(f"fsync policy must be 'always', 'everysec' or 'no', not {fsync!r}")
        self.directory = os.fspath(directory)
        self.fsync = fsync
        #: At least this many of the newest records stay readable (`records_since`) after a
        #: checkpoint, with a checkpoint at or before the first of them (change feeds and
        #: replicas resume from there; see `_drop_covered`).
        self.retain = retain
        #: Set by recovery when it cut a torn tail: records were lost, so a history id built
        #: on this journal must change (replicas that saw them start over).
        self.cut_tail = False
        #: Set by a primary: the lowest seq a replica still needs (None: none), kept like
        #: retention as long as it asks (see `pyzdb.server.feed.Hub.replica_floor`).
        self.hold: Callable[[], int | None] | None = None
        #: The newest records as appended, `(seq, record, payload size)`, at most
        #: `recent_bytes` of payload: `records_since` serves a reader near the end (a replica
        #: or change feed keeping up) from here instead of decoding the segment again.
        self._recent: collections.deque[tuple[int, object, int]] = collections.deque()
        self._recent_size = 0
        try:
            os.makedirs(self.directory)
        except FileExistsError:
            pass
        else:  # a new directory must survive a crash as well as the files in it
            _fsync_directory(os.path.dirname(os.path.abspath(self.directory)))
        self._lock_fd = _lock_directory(self.directory)
        self._mutex = threading.Lock()
        self._state = "opened"  # -> "recovering" -> "ready" -> "closed"
        self._fd: int | None = None  # the last segment, open for appending once ready
        self._segment_first = 0  # first seq the open segment holds (or will hold)
        self._last_seq = 0
        #: Seq of the newest record known to be on disk (<= `_last_seq`): an fdatasync that
        #: covered it has returned. Replies that depend on a record wait for it (`durable_seq`).
        self._durable_seq = 0
        self._fsync_times: collections.deque[float] = collections.deque(maxlen=16)
        self._broken: BaseException | None = None
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if fsync == "everysec":
            self._flusher = threading.Thread(
                target=self._flush_every_second, name="pyzdb-journal-fsync", daemon=True
            )
            self._flusher.start()

    # -- recovery ----------------------------------------------------------------------------

    def recover(self) -> tuple[object | None, Iterator[tuple[int, object]]]:
        """Return the newest valid checkpoint payload (or None) and a lazy iterator of records.

        The iterator yields `(seq, record)` for every record after the checkpoint, in order
        across segments, decoding in batches with the cyclic GC paused. A torn or corrupt
        last frame is cut off (logged); anything else wrong raises `Error` from `recover()` or
        from the iterator, before a record that cannot be trusted is yielded. `last_seq`
        follows the replay: the checkpoint's seq at first, the journal's end once exhausted.
        """
        with self._mutex:
            if self._state != "opened":
                raise Error("recover() is called once, right after opening the journal")
            self._state = "recovering"
        for name in os.listdir(self.directory):
            if _TEMP_NAME.fullmatch(name):  # a file that a crash left unfinished
                os.unlink(os.path.join(self.directory, name))
        segments = self._list(_SEGMENT_NAME)
        payload, base, must_reach = self._load_checkpoint(self._list(_CHECKPOINT_NAME), segments)
        self._last_seq = base
        start = max((i for i, (first, _) in enumerate(segments) if first <= base + 1), default=0)
        return payload, self._replay(segments[start:], base, must_reach)

    def _load_checkpoint(
        self, checkpoints: list[tuple[int, str]], segments: list[tuple[int, str]]
    ) -> tuple[object | None, int, int]:
        """Pick the recovery point: (payload, its seq, seq the journal must reach).

        Newest first; a corrupt checkpoint is passed over only when the journal still holds
        every record from an older point up to it, so the fallback loses nothing.
        """
        journal_start = segments[0][0] if segments else None
        corrupt: list[tuple[int, str, str]] = []
        for seq, path in [*reversed(checkpoints), (0, None)]:  # (0, None): the empty start
            if (journal_start is None and corrupt) or (journal_start or 0) > seq + 1:
                raise Error(_no_recovery_point(seq, journal_start, corrupt))
            try:
                payload = None if path is None else _read_checkpoint(path, seq)
            except _Corrupt as exc:
                log.error("checkpoint %s is corrupt (%s); trying an older one", path, exc)
                corrupt.append((seq, path, str(exc)))
                continue
            break
        for _, bad_path, _ in corrupt:  # kept for forensics, out of the way of later recoveries
            os.replace(bad_path, bad_path + ".corrupt")
        return payload, seq, max((bad for bad, _, _ in corrupt), default=seq)

    def _replay(
        self, segments: list[tuple[int, str]], base: int, must_reach: int
    ) -> Iterator[tuple[int, object]]:
        expect = segments[0][0] if segments else base + 1
        for index, (first, path) in enumerate(segments):
            if first != expect:
                raise Error(
                    f"journal gap: {os.path.basename(path)} starts at seq {first} but the "
                    f"previous segment ends at seq {expect - 1}"
                )
            later_segments = len(segments) - index - 1
            expect = yield from self._replay_segment(path, expect, base, later_segments)
        if expect - 1 < must_reach:
            raise Error(
                f"the journal ends at seq {expect - 1}, short of the corrupt checkpoint at seq "
                f"{must_reach} it should back up: refusing to start without records "
                f"{expect}..{must_reach}"
            )
        self._finish_recovery(segments, max(base, expect - 1), expect)

    def _replay_segment(
        self, path: str, expect: int, base: int, later_segments: int
    ) -> Generator[tuple[int, object], None, int]:
        """Yield one segment's records after `base`; return the seq due next (rule 1 above)."""
        with open(path, "r+b" if not later_segments else "rb") as handle:
            size = _check_segment_header(handle, path)
            pos, problem, later = _SEGMENT_HEADER.size, None, None
            if size > pos:
                with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                    with memoryview(mapped) as view:
                        while pos < size and not problem:
                            with gc_paused:
                                batch, pos, expect, problem = _decode(view, pos, expect, base, path)
                            for seq, record in batch:
                                self._last_seq = seq
                                yield seq, record
                        if problem and not later_segments:
                            later = _find_valid_frame(view, pos, expect)
            if problem:
                if later_segments or later is not None:
                    after = (
                        f"{later_segments} later segment(s) follow"
                        if later_segments
                        else f"a valid record follows at offset {later}"
                    )
                    raise Error(
                        f"corrupt journal record in {path} at offset {pos} (seq {expect}): "
                        f"{problem}; {after}, so it holds acknowledged data: refusing to drop it"
                    )
                log.warning(
                    "journal %s: cut a torn tail of %d bytes at offset %d (seq %d on): %s",
                    path,
                    size - pos,
                    pos,
                    expect,
                    problem,
                )
                handle.truncate(pos)
                os.fsync(handle.fileno())
                self.cut_tail = True
        return expect

    def _finish_recovery(
        self, segments: list[tuple[int, str]], last: int, next_in_last: int
    ) -> None:
        """Open the journal for appending: reuse the last segment if it continues at `last+1`."""
        with self._mutex:
            if self._state != "recovering":
                raise Error("the journal was closed during recovery")
            if segments and next_in_last == last + 1:
                self._fd = os.open(segments[-1][1], os.O_WRONLY | os.O_APPEND)
                self._segment_first = segments[-1][0]
                if self.fsync == "always" and last >= segments[-1][0]:
                    # The records replayed from it may be in the page cache only (a process
                    # that died between append and fsync): make them durable before anybody
                    # is shown them.
                    try:
                        os.fdatasync(self._fd)
                    except OSError as exc:
                        raise self._break(exc, "fsync") from exc
            else:
                self._start_segment(last + 1)
            self._last_seq = last
            self._durable_seq = last
            self._state = "ready"

    # -- appending ---------------------------------------------------------------------------

    def append(self, record: object, sync: bool = True) -> int:
        """Write `record` as the next frame and return its seq.

        Under `always`, returns only once the record is on disk (fdatasync) unless
        `sync=False`: then the caller groups appends and calls `sync()` once (group commit).
        Under `everysec`/`no` the policy decides when to fsync. A failed write or fsync
        breaks the journal for good: after Linux reports a writeback error the page cache
        no longer tells what is on disk, so only a restart (recovery from disk) is safe.
        """
        try:
            payload = marshal.dumps(record, _MARSHAL_VERSION)
        except ValueError as exc:
            raise TypeError(f"a journal record must be plain marshal-able data: {exc}") from None
        size = len(payload)
        if size > _MAX_PAYLOAD:
            raise Error(f"a journal record is limited to {_MAX_PAYLOAD} bytes, got {size}")
        with self._mutex:
            if self._state != "ready" or self._broken is not None:  # one test on the hot path
                self._check_writable()
            seq = self._last_seq + 1
            seq_bytes = _SEQ.pack(seq)
            crc = zlib.crc32(payload, zlib.crc32(seq_bytes))
            # One buffer, one write(2): cheaper than writev for the usual small record.
            frame = _LENGTH_CRC.pack(size, crc) + seq_bytes + payload
            try:
                _write_all(self._fd, frame)
            except OSError as exc:
                raise self._break(exc, "write") from exc
            self._last_seq = seq
            self._remember(seq, record, size)
            if sync and self.fsync == "always":
                self._sync_locked()
            return seq

    def _remember(self, seq: int, record: object, size: int) -> None:
        recent = self._recent
        recent.append((seq, record, size))
        self._recent_size += size
        while self._recent_size > self.recent_bytes or len(recent) > self.recent_records:
            self._recent_size -= recent.popleft()[2]

    def sync(self) -> None:
        """Under `always`, fsync the appends made with `sync=False`; otherwise the policy's job.

        On return every record appended before the call is durable (`durable_seq` covers it).
        The fdatasync runs outside the mutex, so other threads keep appending meanwhile (group
        commit with a sync thread: the next batch is evaluated and appended while this one
        reaches the disk). It runs on a duplicate of the segment's descriptor: a checkpoint
        may switch segments and close the original meanwhile (it fsyncs the old segment
        itself first, under the mutex, so rule 1 holds either way).
        """
        with self._mutex:
            self._check_writable()
            if self.fsync != "always" or self._durable_seq >= self._last_seq:
                return
            target = self._last_seq
            try:
                fd = os.dup(self._fd)
            except OSError as exc:
                raise self._break(exc, "fsync") from exc
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
            if target > self._durable_seq:
                self._durable_seq = target

    @property
    def last_seq(self) -> int:
        """Seq of the newest record (0 for an empty journal); the next append gets +1."""
        return self._last_seq

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

    # -- checkpoints -------------------------------------------------------------------------

    def checkpoint(self, payload: object) -> None:
        """Make `payload` (the state as of `last_seq`) the recovery point; drop what it covers.

        Order matters: the journal is fsynced, the checkpoint written to a temp file, fsynced,
        renamed and the directory fsynced; only then does a new segment start and are files
        older than the retained recovery points deleted. A crash anywhere leaves either the
        old or the new recovery point complete. The body is marshalled in one C call and
        written straight to the file: one transient copy of the encoded tree, never two.
        """
        with self._mutex:
            self._check_writable()
            seq = self._last_seq
            self._sync_locked()
            path = os.path.join(self.directory, f"checkpoint-{seq:020d}.ckpt")
            try:
                body = marshal.dumps(payload, _MARSHAL_VERSION)
            except ValueError as exc:
                raise TypeError(f"a checkpoint must be plain marshal-able data: {exc}") from None
            header = _CHECKPOINT_HEADER.pack(
                _CHECKPOINT_MAGIC, FORMAT_VERSION, seq, len(body), zlib.crc32(body)
            )
            try:
                _write_new_file(path, header, body)
            except OSError as exc:
                raise Error(f"checkpoint {path} could not be written: {exc}") from exc
            del body
            try:
                if self._segment_first <= seq:  # the open segment holds records: start afresh
                    old_fd = self._fd
                    self._start_segment(seq + 1)
                    os.close(old_fd)
                self._drop_covered()
            except OSError as exc:
                raise Error(f"checkpoint {path} is written, but cleaning up failed: {exc}") from exc

    def _drop_covered(self) -> None:
        """Delete checkpoints beyond `keep_checkpoints` and segments the oldest kept covers."""
        checkpoints = self._list(_CHECKPOINT_NAME)
        keep = self.keep_checkpoints
        kept = checkpoints[-keep:]
        floor = self._last_seq - self.retain if self.retain > 0 else None
        held = self.hold() if self.hold is not None else None
        if held is not None:
            floor = held if floor is None else min(floor, held)
        if floor is not None:
            # Retention: the newest checkpoint at or before the first retained record stays,
            # as the base a resumed feed rebuilds its value from; with none, the journal
            # reaches back as far as it did (every checkpoint stays until one is old enough).
            older = [item for item in checkpoints if item[0] <= floor]
            kept = [older[-1], *(c for c in kept if c != older[-1])] if older else checkpoints
        for item in checkpoints:
            if item not in kept:
                os.unlink(item[1])
        base = checkpoints[-keep][0] if len(checkpoints) >= keep else 0
        if floor is not None:
            base = min(base, kept[0][0] if kept[0][0] <= floor else 0)
        segments = self._list(_SEGMENT_NAME)
        for (_, path), (next_first, _) in zip(segments, segments[1:], strict=False):
            if next_first - 1 <= base:
                os.unlink(path)

    def install_checkpoint(self, seq: int, payload: object) -> None:
        """Start over from `payload`, the state as of `seq` (a replica's bootstrap).

        The checkpoint is made durable first; then every other checkpoint and segment goes,
        and appending continues at `seq + 1`. A crash in between leaves this checkpoint as the
        newest recovery point, or the old directory: both are consistent.
        """
        with self._mutex:
            self._check_writable()
            self._sync_locked()
            path = os.path.join(self.directory, f"checkpoint-{seq:020d}.ckpt")
            body = marshal.dumps(payload, _MARSHAL_VERSION)
            header = _CHECKPOINT_HEADER.pack(
                _CHECKPOINT_MAGIC, FORMAT_VERSION, seq, len(body), zlib.crc32(body)
            )
            _write_new_file(path, header, body)
            del body
            self._recent.clear()
            self._recent_size = 0
            old_fd = self._fd
            self._start_segment(seq + 1)
            os.close(old_fd)
            keep = {path, os.path.join(self.directory, f"journal-{seq + 1:020d}.log")}
            for _, other in self._list(_CHECKPOINT_NAME) + self._list(_SEGMENT_NAME):
                if other not in keep:
                    os.unlink(other)
            _fsync_directory(self.directory)
            self._last_seq = self._durable_seq = seq

    def checkpoint_seqs(self) -> list[int]:
        """Seqs of the checkpoints on disk, oldest first."""
        return [seq for seq, _ in self._list(_CHECKPOINT_NAME)]

    def read_checkpoint(self, seq: int) -> object:
        """The payload of the checkpoint at `seq` (validated); `Error` if it is gone or bad."""
        path = os.path.join(self.directory, f"checkpoint-{seq:020d}.ckpt")
        try:
            return _read_checkpoint(path, seq)
        except (OSError, _Corrupt) as exc:
            raise Error(f"checkpoint at seq {seq} cannot be read: {exc}") from None

    @property
    def first_seq(self) -> int:
        """Seq of the oldest record `records_since` can still return (last_seq + 1: none)."""
        with self._mutex:
            segments = self._list(_SEGMENT_NAME)
            return segments[0][0] if segments else self._last_seq + 1

    # -- reading for replicas ----------------------------------------------------------------

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
            segments = self._list(_SEGMENT_NAME)
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
        return self._read_since(handles, seq, end)

    def _read_since(
        self, handles: list[tuple[int, str, IO[bytes]]], seq: int, end: int
    ) -> Iterator[tuple[int, object]]:
        expect = handles[0][0]
        try:
            for first, path, handle in handles:
                if first != expect or expect > end:
                    break
                size = _check_segment_header(handle, path)
                if size == _SEGMENT_HEADER.size:
                    continue
                with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                    with memoryview(mapped) as view:
                        pos, problem = _SEGMENT_HEADER.size, None
                        while pos < size and expect <= end and not problem:
                            with gc_paused:
                                batch, pos, expect, problem = _decode(view, pos, expect, seq, path)
                            yield from (item for item in batch if item[0] <= end)
        finally:
            for _, _, handle in handles:
                handle.close()
        if expect <= end:
            raise Error(
                f"journal record seq {expect} could not be read back (journal directory "
                f"{self.directory}): the journal changed under the reader"
            )

    # -- closing -----------------------------------------------------------------------------

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
                    and self._broken is None
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

    # -- internals ---------------------------------------------------------------------------

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

    def _sync_locked(self) -> None:
        """Fdatasync the open segment unless every record is known durable.

        A `sync()` in flight on another thread does not count: its fdatasync may not have
        returned, and a checkpoint must not start a new segment before the old one is on disk.
        """
        if self._durable_seq >= self._last_seq:
            return
        started = time.perf_counter()
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            raise self._break(exc, "fsync") from exc
        self._time_fsync(started)
        self._durable_seq = self._last_seq

    def _time_fsync(self, started: float) -> None:
        self._fsync_times.append(time.perf_counter() - started)

    def _break(self, exc: OSError, what: str) -> Error:
        """Refuse every later write (as Redis does when persistence fails); the error to raise."""
        self._broken = exc
        log.error("journal %s failed, refusing further writes: %s", what, exc)
        return Error(f"journal {what} failed, no further writes are accepted: {exc}")

    def _flush_every_second(self) -> None:
        """The `everysec` thread: fsync at most once per interval, only when there is news."""
        while not self._stop.wait(self.everysec_interval):
            with self._mutex:
                if (
                    self._durable_seq >= self._last_seq
                    or self._broken is not None
                    or self._fd is None
                ):
                    continue
                # fsync a duplicate outside the lock: appends go on meanwhile, and a segment
                # switch cannot close the descriptor under the fsync.
                try:
                    fd = os.dup(self._fd)
                except OSError as exc:
                    self._break(exc, "fsync")
                    continue
                target = self._last_seq
            started = time.perf_counter()
            try:
                os.fdatasync(fd)
            except OSError as exc:
                with self._mutex:
                    self._break(exc, "fsync")
                continue
            finally:
                os.close(fd)
            self._time_fsync(started)
            with self._mutex:
                if target > self._durable_seq:
                    self._durable_seq = target

    def _start_segment(self, first: int) -> None:
        """Create `journal-<first>.log` complete (rule 1) and make it the open segment."""
        path = os.path.join(self.directory, f"journal-{first:020d}.log")
        self._fd = _write_new_file(
            path, _SEGMENT_HEADER.pack(_SEGMENT_MAGIC, FORMAT_VERSION), b"", keep_open=True
        )
        self._segment_first = first

    def _list(self, pattern: re.Pattern[str]) -> list[tuple[int, str]]:
        found = []
        for name in os.listdir(self.directory):
            match = pattern.fullmatch(name)
            if match:
                found.append((int(match.group(1)), os.path.join(self.directory, name)))
        return sorted(found)


class _Corrupt(Exception):
    """A checkpoint file failed validation (recovery may fall back to an older one)."""


def _decode(
    view: memoryview, pos: int, expect: int, skip_to: int, path: str
) -> tuple[list[tuple[int, object]], int, int, str | None]:
    """Decode up to `_BATCH` frames at `pos`: (records, next pos, next seq, problem or None).

    Frames with seq <= `skip_to` are checked but not unmarshalled. A problem stops the batch
    at the bad frame; the caller decides between a torn tail and corruption. A well-formed
    frame from the future (seq above the one due) is never a torn write: it raises at once.
    One from the past may be stale bytes of a deleted segment exposed past the real end by a
    power loss, so it is a problem like any other.
    """
    # Locals: this loop runs once per record of the journal.
    unpack, crc32, loads, header = _FRAME.unpack_from, zlib.crc32, marshal.loads, _FRAME.size
    end = len(view)
    records: list[tuple[int, object]] = []
    while pos < end and len(records) < _BATCH:
        if end - pos < header:
            return records, pos, expect, f"a partial frame header ({end - pos} bytes)"
        length, crc, seq = unpack(view, pos)
        stop = pos + header + length
        if not length or stop > end:
            return records, pos, expect, f"a payload length of {length} runs past the end"
        if crc32(view[pos + 8 : stop]) != crc:
            return records, pos, expect, "a checksum mismatch"
        if seq > expect:
            raise Error(f"journal gap in {path} at offset {pos}: seq {seq} where {expect} was due")
        if seq < expect:
            return records, pos, expect, f"a stale frame (seq {seq} where {expect} was due)"
        if seq > skip_to:
            try:
                records.append((seq, loads(view[pos + header : stop])))
            except (EOFError, ValueError, TypeError) as exc:
                return records, pos, expect, f"an undecodable payload ({exc})"
        pos = stop
        expect += 1
    return records, pos, expect, None


def _find_valid_frame(view: memoryview, bad: int, expect: int) -> int | None:
    """Offset of a valid frame after the bad one at `bad` with seq >= `expect`, if any.

    This is what tells a torn tail (nothing valid after it) from corruption in the middle.
    A later frame's seq lies in [expect, expect + frames that fit], so a regex finds the
    candidate seq fields in C and only those are checked in Python.
    """
    end = len(view)
    highest = expect + (end - bad) // _SMALLEST_FRAME
    for match in _seq_field_pattern(expect, highest).finditer(view, bad + 9):
        pos = match.start() - 8
        length, crc = _LENGTH_CRC.unpack_from(view, pos)
        stop = pos + _FRAME.size + length
        if length and stop <= end and zlib.crc32(view[pos + 8 : stop]) == crc:
            return pos
    return None


def _seq_field_pattern(low: int, high: int) -> re.Pattern[bytes]:
    """A regex whose zero-width matches sit where 8 bytes spell, little-endian, a seq in range.

    The range is split as for a numeric-range regex: each alternative has free low bytes,
    one byte within a class, and fixed high bytes (at most 2 alternatives per byte).
    """
    alternatives = []
    while low <= high:
        free = 0  # low bytes that take any value in this alternative
        while free < 7 and low % 256 ** (free + 1) == 0 and low + 256 ** (free + 1) - 1 <= high:
            free += 1
        unit = 256**free
        digit = low // unit % 256
        count = min((high - low + 1) // unit, 256 - digit)
        fixed = (low // unit // 256).to_bytes(7 - free, "little")
        byte_class = b"[%s-%s]" % (re.escape(bytes([digit])), re.escape(bytes([digit + count - 1])))
        alternatives.append(b"." * free + byte_class + re.escape(fixed))
        low += count * unit
    return re.compile(b"(?=(?:%s))" % b"|".join(alternatives), re.DOTALL)


def _read_checkpoint(path: str, seq: int) -> object:
    """Validate and load one checkpoint, mapped rather than read: no copy of the body."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < _CHECKPOINT_HEADER.size:
            raise _Corrupt(f"{size} bytes, shorter than the header")
        with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as mapped:
            with memoryview(mapped) as view:
                magic, version, found_seq, length, crc = _CHECKPOINT_HEADER.unpack_from(view)
                if magic != _CHECKPOINT_MAGIC:
                    raise _Corrupt("not a pyzdb checkpoint (bad magic)")
                if version != FORMAT_VERSION:
                    raise _Corrupt(f"format version {version}, this pyzdb reads {FORMAT_VERSION}")
                if found_seq != seq:
                    raise _Corrupt(f"its header says seq {found_seq}, its name seq {seq}")
                if length != size - _CHECKPOINT_HEADER.size:
                    raise _Corrupt(f"body of {size - _CHECKPOINT_HEADER.size} bytes, not {length}")
                with view[_CHECKPOINT_HEADER.size :] as body:
                    if zlib.crc32(body) != crc:
                        raise _Corrupt("checksum mismatch")
                    try:
                        with gc_paused:
                            return marshal.loads(body)
                    except (EOFError, ValueError, TypeError) as exc:
                        raise _Corrupt(f"undecodable body ({exc})") from None


def _check_segment_header(handle: IO[bytes], path: str) -> int:
    """Validate a segment's header and return the file's size."""
    size = os.fstat(handle.fileno()).st_size
    head = os.pread(handle.fileno(), _SEGMENT_HEADER.size, 0)
    if len(head) < _SEGMENT_HEADER.size or _SEGMENT_HEADER.unpack(head)[0] != _SEGMENT_MAGIC:
        raise Error(f"{path} is not a pyzdb journal segment (bad header)")
    version = _SEGMENT_HEADER.unpack(head)[1]
    if version != FORMAT_VERSION:
        raise Error(f"{path} has format version {version}; this pyzdb reads {FORMAT_VERSION}")
    return size


def _no_recovery_point(
    seq: int, journal_start: int | None, corrupt: list[tuple[int, str, str]]
) -> str:
    journal = f"the journal starts at seq {journal_start}" if journal_start else "no journal"
    if not corrupt:
        return (
            f"{journal}, but the newest checkpoint covers only up to seq {seq}: records "
            f"{seq + 1}..{journal_start - 1} are missing"
        )
    bad = "; ".join(f"{path}: {why}" for _, path, why in corrupt)
    return (
        f"no usable checkpoint: {bad}; and {journal} to replay from an older point: "
        "refusing to start without the data they hold (restore the directory from a backup)"
    )


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data`: a short write (disk nearly full, >2 GiB) is finished."""
    written = os.write(fd, data)
    if written < len(data):
        rest = memoryview(data)[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]


def _write_new_file(path: str, header: bytes, body: bytes, keep_open: bool = False) -> int | None:
    """Create `path` whole: write `<path>.tmp`, fsync, rename, fsync the directory.

    With `keep_open` the descriptor (opened for appending) is returned instead of closed.
    """
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        _write_all(fd, header)
        if body:  # a checkpoint body goes out as is, never concatenated: no second copy
            _write_all(fd, body)
        os.fsync(fd)
        os.rename(tmp, path)
        _fsync_directory(os.path.dirname(path))
    except BaseException:
        os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if keep_open:
        return fd
    os.close(fd)
    return None


def _fsync_directory(directory: str) -> None:
    """Make a create/rename/delete in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_directory(directory: str) -> int:
    """Take the directory's exclusive flock, or say which process holds it."""
    fd = os.open(os.path.join(directory, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise Error(
            f"data directory {directory} is in use by another process (pid {holder})"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


__all__ = ["Journal", "FsyncPolicy", "FORMAT_VERSION"]
