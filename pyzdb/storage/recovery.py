"""Recovery: the newest valid checkpoint, then a lazy replay of the records after it.

The rules that make this safe (a torn frame can only be the last one of the last segment; a
corrupt checkpoint falls back to an older recovery point, never to less) are in
`pyzdb.storage.journal`. Replay decodes a batch of frames at a time with the cyclic GC paused,
and yields records outside the pause, so the caller's applying runs with the GC on.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Generator, Iterator

from pyzdb.errors import Error
from pyzdb.gcpause import gc_paused
from pyzdb.storage.checkpoints import choose_recovery_point
from pyzdb.storage.durability import Durability
from pyzdb.storage.format import SEGMENT_HEADER, TEMP_NAME, list_checkpoints, list_segments
from pyzdb.storage.frames import check_segment_header, decode_frames, find_valid_frame
from pyzdb.storage.journalcore import log

__all__ = ["Recovery"]


class Recovery(Durability):
    """Recovering the journal (see the module); a part of `Journal`."""

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
            if TEMP_NAME.fullmatch(name):  # a file that a crash left unfinished
                os.unlink(os.path.join(self.directory, name))
        segments = list_segments(self.directory)
        checkpoints = list_checkpoints(self.directory)
        payload, base, must_reach = choose_recovery_point(checkpoints, segments)
        self._last_seq = base
        start = max((i for i, (first, _) in enumerate(segments) if first <= base + 1), default=0)
        return payload, self._replay(segments[start:], base, must_reach)

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
        """Yield one segment's records after `base`; return the seq due next (rule 1 of
        `pyzdb.storage.journal`)."""
        with open(path, "r+b" if not later_segments else "rb") as handle:
            size = check_segment_header(handle, path)
            pos, problem, later = SEGMENT_HEADER.size, None, None
            if size > pos:
                with mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                    with memoryview(mapped) as view:
                        while pos < size and not problem:
                            with gc_paused:
                                batch, pos, expect, problem = decode_frames(
                                    view, pos, expect, base, path
                                )
                            for seq, record in batch:
                                self._last_seq = seq
                                yield seq, record
                        if problem and not later_segments:
                            later = find_valid_frame(view, pos, expect)
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
                self._end = self._durable_end = os.fstat(self._fd).st_size
                if self.fsync == "always" and last >= segments[-1][0]:
                    # The records replayed from it may be in the page cache only (a process
                    # that died between append and fsync): make them durable before anybody
                    # is shown them.
                    try:
                        os.fdatasync(self._fd)
                    except OSError as exc:  # nothing is cut: those records may be on disk
                        raise Error(f"journal fsync failed while opening: {exc}") from exc
            else:
                self._start_segment(last + 1)
            self._last_seq = last
            self._durable_seq = last
            self._state = "ready"
