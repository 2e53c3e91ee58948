"""Checkpoints: writing one, reading one back, choosing the recovery point, dropping files.

A checkpoint stands for every record up to its seq (layout in `pyzdb.storage.format`). It
replaces the journal only once it is durable, and the previous recovery point (an older
checkpoint, or the empty start) stays on disk with the journal after it, so a corrupt newest
checkpoint falls back to that point plus replay, never to less (rule 2 of
`pyzdb.storage.journal`). Retention (`Journal.retain`, `Journal.hold`) keeps more: records a
change feed or a replica may still ask for, with a checkpoint at or before the first of them.
"""

from __future__ import annotations

import marshal
import mmap
import os
import zlib
from typing import cast

from pyzdb.errors import Error
from pyzdb.gcpause import gc_paused
from pyzdb.storage.durability import Durability
from pyzdb.storage.files import fsync_directory, write_new_file
from pyzdb.storage.format import (
    CHECKPOINT_HEADER,
    CHECKPOINT_MAGIC,
    FORMAT_VERSION,
    MARSHAL_VERSION,
    checkpoint_path,
    list_checkpoints,
    list_segments,
    segment_path,
)
from pyzdb.storage.journalcore import log

__all__ = [
    "Checkpointing",
    "Corrupt",
    "choose_recovery_point",
    "load_checkpoint",
    "redundant_files",
    "write_checkpoint",
]


class Corrupt(Exception):
    """A checkpoint file failed validation (recovery may fall back to an older one)."""


def write_checkpoint(path: str, seq: int, payload: object) -> None:
    """Write `payload`, the state as of `seq`, as the checkpoint file `path`, born complete.

    The body is marshalled in one C call and written straight to the file: one transient copy
    of the encoded tree, never two. ValueError: `payload` is not marshal-able.
    """
    # ignore: the stub lists what marshal writes; refusing the rest (ValueError) is the contract
    body = marshal.dumps(payload, MARSHAL_VERSION)  # type: ignore[arg-type]
    header = CHECKPOINT_HEADER.pack(
        CHECKPOINT_MAGIC, FORMAT_VERSION, seq, len(body), zlib.crc32(body)
    )
    write_new_file(path, header, body)


def load_checkpoint(path: str, seq: int) -> object:
    """Validate and load one checkpoint, mapped rather than read: no copy of the body."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < CHECKPOINT_HEADER.size:
            raise Corrupt(f"{size} bytes, shorter than the header")
        with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as mapped:
            with memoryview(mapped) as view:
                magic, version, found_seq, length, crc = CHECKPOINT_HEADER.unpack_from(view)
                if magic != CHECKPOINT_MAGIC:
                    raise Corrupt("not a pyzdb checkpoint (bad magic)")
                if version != FORMAT_VERSION:
                    raise Corrupt(f"format version {version}, this pyzdb reads {FORMAT_VERSION}")
                if found_seq != seq:
                    raise Corrupt(f"its header says seq {found_seq}, its name seq {seq}")
                if length != size - CHECKPOINT_HEADER.size:
                    raise Corrupt(f"body of {size - CHECKPOINT_HEADER.size} bytes, not {length}")
                with view[CHECKPOINT_HEADER.size :] as body:
                    if zlib.crc32(body) != crc:
                        raise Corrupt("checksum mismatch")
                    try:
                        with gc_paused:
                            return marshal.loads(body)
                    except (EOFError, ValueError, TypeError) as exc:
                        raise Corrupt(f"undecodable body ({exc})") from None


def choose_recovery_point(
    checkpoints: list[tuple[int, str]], segments: list[tuple[int, str]]
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
            payload = None if path is None else load_checkpoint(path, seq)
        except Corrupt as exc:
            log.error("checkpoint %s is corrupt (%s); trying an older one", path, exc)
            assert path is not None  # only a file can be corrupt
            corrupt.append((seq, path, str(exc)))
            continue
        break
    for _, bad_path, _ in corrupt:  # kept for forensics, out of the way of later recoveries
        os.replace(bad_path, bad_path + ".corrupt")
    return payload, seq, max((bad for bad, _, _ in corrupt), default=seq)


def _no_recovery_point(
    seq: int, journal_start: int | None, corrupt: list[tuple[int, str, str]]
) -> str:
    journal = f"the journal starts at seq {journal_start}" if journal_start else "no journal"
    if not corrupt:  # then the caller found a journal (it refuses no journal only if corrupt)
        assert journal_start is not None
        return (
            f"{journal}, but the newest checkpoint covers only up to seq {seq}: records "
            f"{seq + 1}..{journal_start - 1} are missing"
        )
    bad = "; ".join(f"{path}: {why}" for _, path, why in corrupt)
    return (
        f"no usable checkpoint: {bad}; and {journal} to replay from an older point: "
        "refusing to start without the data they hold (restore the directory from a backup)"
    )


def redundant_files(
    checkpoints: list[tuple[int, str]],
    segments: list[tuple[int, str]],
    keep: int,
    floor: int | None,
) -> list[str]:
    """The files a new checkpoint made redundant, checkpoints first (the order to delete in).

    Checkpoints beyond the newest `keep` go, and segments the oldest kept one covers. With a
    retention `floor` (the first record a reader may still ask for), the newest checkpoint at
    or before it stays too, as the base a resumed feed rebuilds its value from; with none,
    the journal reaches back as far as it did (every checkpoint stays until one is old enough).

    >>> ckpts = [(10, "c10"), (20, "c20"), (30, "c30")]
    >>> segs = [(1, "j1"), (11, "j11"), (21, "j21"), (31, "j31")]
    >>> redundant_files(ckpts, segs, 2, None)
    ['c10', 'j1', 'j11']
    >>> redundant_files(ckpts, segs, 2, 15)
    ['j1']
    """
    kept = checkpoints[-keep:]
    if floor is not None:
        older = [item for item in checkpoints if item[0] <= floor]
        kept = [older[-1], *(c for c in kept if c != older[-1])] if older else checkpoints
    doomed = [path for item in checkpoints if item not in kept for path in (item[1],)]
    base = checkpoints[-keep][0] if len(checkpoints) >= keep else 0
    if floor is not None:
        base = min(base, kept[0][0] if kept[0][0] <= floor else 0)
    for (_, path), (next_first, _) in zip(segments, segments[1:], strict=False):
        if next_first - 1 <= base:
            doomed.append(path)
    return doomed


class Checkpointing(Durability):
    """Taking, installing and reading checkpoints (see the module); a part of `Journal`."""

    #: Recovery points kept on disk, each with the journal after it: the newest checkpoint,
    #: and the ones it falls back to when it turns out corrupt. The empty start (seq 0) counts
    #: as a recovery point while the journal still reaches back to seq 1.
    keep_checkpoints = 2

    def checkpoint(self, payload: object) -> None:
        """Make `payload` (the state as of `last_seq`) the recovery point; drop what it covers.

        Order matters: the journal is fsynced, the checkpoint written to a temp file, fsynced,
        renamed and the directory fsynced; only then does a new segment start and are files
        older than the retained recovery points deleted. A crash anywhere leaves either the
        old or the new recovery point complete.
        """
        with self._mutex:
            self._check_writable()
            seq = self._last_seq
            self._sync_locked()
            path = checkpoint_path(self.directory, seq)
            try:
                write_checkpoint(path, seq, payload)
            except ValueError as exc:
                raise TypeError(f"a checkpoint must be plain marshal-able data: {exc}") from None
            except OSError as exc:
                raise Error(f"checkpoint {path} could not be written: {exc}") from exc
            try:
                if self._segment_first <= seq:  # the open segment holds records: start afresh
                    old_fd = cast(int, self._fd)  # writable: the segment is open
                    self._start_segment(seq + 1)
                    os.close(old_fd)
                self._drop_covered()
            except OSError as exc:
                raise Error(f"checkpoint {path} is written, but cleaning up failed: {exc}") from exc

    def _drop_covered(self) -> None:
        """Delete checkpoints beyond `keep_checkpoints` and segments the oldest kept covers."""
        floor = self._last_seq - self.retain if self.retain > 0 else None
        held = self.hold() if self.hold is not None else None
        if held is not None:
            floor = held if floor is None else min(floor, held)
        checkpoints = list_checkpoints(self.directory)
        segments = list_segments(self.directory)
        for path in redundant_files(checkpoints, segments, self.keep_checkpoints, floor):
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
            path = checkpoint_path(self.directory, seq)
            write_checkpoint(path, seq, payload)
            self._recent.clear()
            self._recent_size = 0
            old_fd = cast(int, self._fd)  # writable: the segment is open
            self._start_segment(seq + 1)
            os.close(old_fd)
            keep = {path, segment_path(self.directory, seq + 1)}
            for _, other in list_checkpoints(self.directory) + list_segments(self.directory):
                if other not in keep:
                    os.unlink(other)
            fsync_directory(self.directory)
            self._last_seq = self._durable_seq = seq

    def checkpoint_seqs(self) -> list[int]:
        """Seqs of the checkpoints on disk, oldest first."""
        return [seq for seq, _ in list_checkpoints(self.directory)]

    def read_checkpoint(self, seq: int) -> object:
        """The payload of the checkpoint at `seq` (validated); `Error` if it is gone or bad."""
        path = checkpoint_path(self.directory, seq)
        try:
            return load_checkpoint(path, seq)
        except (OSError, Corrupt) as exc:
            raise Error(f"checkpoint at seq {seq} cannot be read: {exc}") from None
