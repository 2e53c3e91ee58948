"""The journal on real files: round trips, torn tails, corruption, checkpoints, locks, kill -9."""

from __future__ import annotations

import errno
import gc
import logging
import marshal
import os
import random
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from crash_writer import record

from pyzdb.errors import Error
from pyzdb.storage.frames import BATCH
from pyzdb.storage.journal import Journal

ROOT = Path(__file__).resolve().parent.parent
CRASH_WRITER = Path(__file__).resolve().parent / "crash_writer.py"

#: One value of every type a record may hold, nested; dict order and tuple-vs-list matter.
EVERY_TYPE = {
    "none": None,
    None: "a None key",
    True: False,
    2: -(2**100),
    1.5: float("inf"),
    "str": "ünïcödé \x00",
    b"bytes": b"\x00\xff",
    (1, "tuple", None): [1, [2, (3, b"")], {}],
    "file": frozenset({("pyzdb.File", "ab" * 32, "name.txt", 3)}),
    "empty": ["", b"", (), [], {}, 0, 0.0, -0.0],
    "z last key": {"b": 1, "a": 2},
}
SCALARS = [None, True, 0, -1, 2**64, 3.25, "", "s", b"", b"\x01", (), [], {}, frozenset()]


def typed(value: object) -> object:
    """`value` with every type and dict order spelled out, so `==` cannot equate 1 and True."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, frozenset):
        return ("frozenset", sorted(repr(typed(v)) for v in value))
    return (type(value).__name__, repr(value))


def opened(directory: Path, fsync: str = "no") -> tuple[Journal, object, list]:
    """Open and fully recover `directory`: (journal, checkpoint payload, records)."""
    journal = Journal(directory, fsync=fsync)
    try:
        payload, records = journal.recover()
        return journal, payload, list(records)
    except BaseException:
        journal.close()
        raise


def reopen(directory: Path) -> tuple[object, list]:
    journal, payload, records = opened(directory)
    journal.close()
    return payload, records


def segment(directory: Path, first: int) -> Path:
    return directory / f"journal-{first:020d}.log"


def checkpoint_file(directory: Path, seq: int) -> Path:
    return directory / f"checkpoint-{seq:020d}.ckpt"


def flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


@pytest.fixture
def two_segments(tmp_path):
    """Records 1..3, checkpoint "state@3", records 4..6: (dir, frame bounds of 4..6)."""
    directory = tmp_path / "data"
    journal, _, _ = opened(directory)
    for n in range(1, 4):
        journal.append(("r", n, "x" * n))
    journal.checkpoint("state@3")
    bounds = []
    for n in range(4, 7):
        start = segment(directory, 4).stat().st_size
        journal.append(("r", n, "x" * n))
        bounds.append((start, segment(directory, 4).stat().st_size))
    journal.close()
    return directory, bounds


# -- round trips -----------------------------------------------------------------------------


def test_records_of_every_type_round_trip_exactly(tmp_path):
    journal, payload, records = opened(tmp_path / "data")
    assert (payload, records, journal.last_seq) == (None, [], 0)
    values = [EVERY_TYPE, *SCALARS, ("unit", "db['c'] += 1", 1.0, [("set", ("c",), "c", 5)])]
    assert [journal.append(v) for v in values] == list(range(1, len(values) + 1))
    journal.close()
    payload, records = reopen(tmp_path / "data")
    assert payload is None
    assert [seq for seq, _ in records] == list(range(1, len(values) + 1))
    assert [typed(r) for _, r in records] == [typed(v) for v in values]


def test_checkpoint_payload_round_trips_exactly(tmp_path):
    journal, _, _ = opened(tmp_path / "data")
    journal.append("before")
    journal.checkpoint({"root": EVERY_TYPE, "history": [EVERY_TYPE, SCALARS]})
    journal.append("after")
    journal.close()
    payload, records = reopen(tmp_path / "data")
    assert typed(payload) == typed({"root": EVERY_TYPE, "history": [EVERY_TYPE, SCALARS]})
    assert records == [(2, "after")]


def test_unmarshallable_record_is_refused_and_the_journal_goes_on(tmp_path):
    journal, _, _ = opened(tmp_path / "data")
    journal.append(1)
    with pytest.raises(TypeError, match="marshal-able"):
        journal.append({"f": lambda: 0})
    with pytest.raises(TypeError, match="marshal-able"):
        journal.checkpoint(object())
    assert journal.append(2) == 2
    journal.close()
    assert reopen(tmp_path / "data") == (None, [(1, 1), (2, 2)])


def test_appends_and_checkpoints_across_segments_keep_two_recovery_points(tmp_path):
    directory = tmp_path / "data"
    journal, _, _ = opened(directory)
    for n in range(1, 31):
        journal.append(n)
        if n % 10 == 0:
            journal.checkpoint(f"state@{n}")
    journal.append(31)
    assert journal.last_seq == 31
    journal.close()
    # Kept: the two newest checkpoints and the journal after the older one.
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        ["LOCK", checkpoint_file(directory, 20).name, checkpoint_file(directory, 30).name]
        + [segment(directory, 21).name, segment(directory, 31).name]
    )
    journal, payload, records = opened(directory)
    assert (payload, records) == ("state@30", [(31, 31)])
    assert journal.append(32) == 32
    journal.close()
    assert reopen(directory) == ("state@30", [(31, 31), (32, 32)])


def test_replay_is_lazy_batched_and_decodes_with_the_gc_paused(tmp_path, monkeypatch):
    journal, _, _ = opened(tmp_path / "data")
    for n in range(3 * BATCH):
        journal.append(n, sync=False)
    journal.close()
    real_loads, gc_during_loads = marshal.loads, []

    def spy(data):
        gc_during_loads.append(gc.isenabled())
        return real_loads(data)

    monkeypatch.setattr(marshal, "loads", spy)
    journal = Journal(tmp_path / "data", fsync="no")
    _, records = journal.recover()
    assert next(records) == (1, 0)
    assert len(gc_during_loads) <= BATCH  # lazy: the rest is not decoded yet
    assert journal.last_seq == 1
    assert gc.isenabled()  # paused only while decoding, not while the caller applies
    rest = list(records)
    journal.close()
    assert len(rest) == 3 * BATCH - 1
    assert gc_during_loads and not any(gc_during_loads)


def test_writes_before_recovery_finished_or_after_close_are_refused(tmp_path):
    journal = Journal(tmp_path / "data", fsync="no")
    with pytest.raises(Error, match="call recover"):
        journal.append(1)
    _, records = journal.recover()
    with pytest.raises(Error, match="once"):
        journal.recover()
    with pytest.raises(Error, match="finish iterating"):
        journal.append(1)
    assert list(records) == []
    assert journal.append(1) == 1
    journal.close()
    journal.close()  # idempotent
    with pytest.raises(Error, match="closed"):
        journal.append(2)


def test_directory_is_created_with_its_parents(tmp_path):
    with Journal(tmp_path / "a" / "b", fsync="no") as journal:
        assert list(journal.recover()[1]) == []
        journal.append("x")
    assert reopen(tmp_path / "a" / "b") == (None, [(1, "x")])


# -- torn and corrupt tails ------------------------------------------------------------------


def test_torn_tail_is_cut_at_every_byte_and_the_journal_appends_after(two_segments, caplog):
    directory, bounds = two_segments
    start, end = bounds[-1]
    pristine = segment(directory, 4).read_bytes()
    assert len(pristine) == end
    for cut in range(start, end):
        segment(directory, 4).write_bytes(pristine[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pyzdb.journal"):
            journal, payload, records = opened(directory)
        assert payload == "state@3"
        assert records == [(4, ("r", 4, "xxxx")), (5, ("r", 5, "xxxxx"))], cut
        assert segment(directory, 4).stat().st_size == start, cut
        assert ("torn tail" in caplog.text) == (cut > start), cut
        assert journal.append("new") == 6
        journal.close()
        assert reopen(directory)[1][-2:] == [(5, ("r", 5, "xxxxx")), (6, "new")], cut


def test_flipped_bit_anywhere_in_the_tail_record_is_cut(two_segments, caplog):
    directory, bounds = two_segments
    start, end = bounds[-1]
    pristine = segment(directory, 4).read_bytes()
    for offset in range(start, end):
        segment(directory, 4).write_bytes(pristine)
        flip(segment(directory, 4), offset, bit=offset % 8)
        with caplog.at_level(logging.WARNING, logger="pyzdb.journal"):
            payload, records = reopen(directory)
        assert [seq for seq, _ in records] == [4, 5], offset
        assert segment(directory, 4).stat().st_size == start, offset
    assert "torn tail" in caplog.text


def test_zeros_or_stale_frames_after_the_last_record_are_cut(two_segments):
    """What a power loss can leave past the real end: zeros, or frames of a deleted segment."""
    directory, bounds = two_segments
    end = bounds[-1][1]
    stale = segment(directory, 4).read_bytes()[bounds[0][0] : bounds[0][1]]  # seq 4 again
    for garbage in (bytes(4096), stale, stale * 3 + bytes(100)):
        with open(segment(directory, 4), "ab") as handle:
            handle.write(garbage)
        assert [seq for seq, _ in reopen(directory)[1]] == [4, 5, 6]
        assert segment(directory, 4).stat().st_size == end


def test_flipped_bit_in_a_middle_record_is_a_hard_error(two_segments):
    directory, bounds = two_segments
    start, end = bounds[1]  # record 5 of 4..6
    pristine = segment(directory, 4).read_bytes()
    for offset in range(start, end):
        segment(directory, 4).write_bytes(pristine)
        flip(segment(directory, 4), offset, bit=offset % 8)
        damaged = segment(directory, 4).read_bytes()
        with pytest.raises(Error, match="refusing to drop it"):
            reopen(directory)
        assert segment(directory, 4).read_bytes() == damaged, offset  # nothing was cut


def test_damage_in_a_segment_that_later_segments_follow_is_a_hard_error(two_segments):
    """Reached by falling back from a corrupt checkpoint to a replay from seq 1."""
    directory, _ = two_segments
    flip(checkpoint_file(directory, 3), 40)
    pristine = segment(directory, 1).read_bytes()
    segment(directory, 1).write_bytes(pristine[:-3])  # the tail of a segment that is not last
    with pytest.raises(Error, match=r"1 later segment\(s\) follow"):
        reopen(directory)
    assert segment(directory, 1).read_bytes() == pristine[:-3]


def test_sequence_gap_is_a_hard_error(two_segments):
    directory, _ = two_segments
    payload = marshal.dumps("from the future", 4)
    seq = struct.pack("<Q", 8)  # 7 is missing
    frame = struct.pack("<II", len(payload), zlib.crc32(payload, zlib.crc32(seq))) + seq + payload
    with open(segment(directory, 4), "ab") as handle:
        handle.write(frame)
    with pytest.raises(Error, match="gap"):
        reopen(directory)


def test_missing_segment_is_a_hard_error(two_segments):
    directory, _ = two_segments
    journal, _, _ = opened(directory)
    journal.append(7)
    journal.checkpoint("state@7")
    journal.append(8)
    journal.close()
    flip(checkpoint_file(directory, 7), 40)  # forces a replay through segment 4
    segment(directory, 4).unlink()
    with pytest.raises(Error, match="no usable checkpoint"):
        reopen(directory)


# -- checkpoints -----------------------------------------------------------------------------


def test_corrupt_newest_checkpoint_falls_back_to_the_older_one(two_segments, caplog):
    directory, _ = two_segments
    journal, _, _ = opened(directory)
    journal.checkpoint("state@6")
    journal.append(7)
    journal.close()
    flip(checkpoint_file(directory, 6), 40)
    with caplog.at_level(logging.ERROR, logger="pyzdb.journal"):
        journal, payload, records = opened(directory)
    assert "corrupt" in caplog.text
    assert payload == "state@3"
    assert [seq for seq, _ in records] == [4, 5, 6, 7]
    assert journal.append(8) == 8
    journal.close()
    assert not checkpoint_file(directory, 6).exists()
    assert (directory / (checkpoint_file(directory, 6).name + ".corrupt")).exists()


def test_corrupt_only_checkpoint_falls_back_to_a_full_replay(two_segments):
    directory, _ = two_segments
    checkpoint_file(directory, 3).write_bytes(checkpoint_file(directory, 3).read_bytes()[:-1])
    payload, records = reopen(directory)
    assert payload is None
    assert [seq for seq, _ in records] == [1, 2, 3, 4, 5, 6]


def test_corrupt_checkpoint_without_a_fallback_refuses_to_start(two_segments):
    directory, _ = two_segments
    segment(directory, 1).unlink()  # the journal no longer reaches back to seq 1
    flip(checkpoint_file(directory, 3), 30)
    with pytest.raises(Error, match="no usable checkpoint.*checksum"):
        reopen(directory)
    assert checkpoint_file(directory, 3).exists()  # evidence left in place


def test_unfinished_checkpoint_from_a_crash_is_ignored_and_removed(two_segments):
    directory, _ = two_segments
    leftover = directory / (checkpoint_file(directory, 6).name + ".tmp")
    leftover.write_bytes(b"half a checkpoint")
    payload, records = reopen(directory)
    assert (payload, [seq for seq, _ in records]) == ("state@3", [4, 5, 6])
    assert not leftover.exists()


def test_checkpoint_twice_at_the_same_seq_replaces_it(tmp_path):
    directory = tmp_path / "data"
    journal, _, _ = opened(directory)
    journal.append(1)
    journal.checkpoint("a")
    journal.checkpoint("b")
    journal.append(2)
    journal.close()
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        ["LOCK", checkpoint_file(directory, 1).name, segment(directory, 1).name]
        + [segment(directory, 2).name]
    )
    assert reopen(directory) == ("b", [(2, 2)])


# -- records_since ---------------------------------------------------------------------------


def test_records_since_serves_a_replica_until_a_checkpoint_drops_them(two_segments):
    directory, _ = two_segments
    journal, _, _ = opened(directory)
    assert [seq for seq, _ in journal.records_since(3)] == [4, 5, 6]
    assert list(journal.records_since(6)) == []
    since_5 = journal.records_since(5)
    journal.append(7)  # after the call: not part of it
    assert list(since_5) == [(6, ("r", 6, "xxxxxx"))]
    since_4 = journal.records_since(4)
    journal.checkpoint("state@7")
    journal.append(8)
    journal.checkpoint("state@8")  # drops segment 4 (4..7), which the reader holds open
    assert not segment(directory, 4).exists()
    assert [seq for seq, _ in since_4] == [5, 6, 7]
    with pytest.raises(Error, match="dropped by a checkpoint"):
        journal.records_since(6)
    assert list(journal.records_since(7)) == [(8, 8)]
    journal.close()


# -- the LOCK --------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment for a child Python that must import this checkout's pyzdb."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def test_second_process_is_refused_with_the_holder_pid(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pyzdb.storage.journal import Journal; "
            "j = Journal(sys.argv[1]); print('locked', flush=True); sys.stdin.readline()",
            str(tmp_path / "data"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(Error, match=rf"in use by another process \(pid {holder.pid}\)"):
            Journal(tmp_path / "data")
    finally:
        holder.communicate("\n", timeout=10)
    with Journal(tmp_path / "data") as journal:  # released when the holder exits
        assert list(journal.recover()[1]) == []


def test_second_journal_in_the_same_process_is_refused(tmp_path):
    with Journal(tmp_path / "data", fsync="no"):
        with pytest.raises(Error, match=rf"in use by another process \(pid {os.getpid()}\)"):
            Journal(tmp_path / "data")
    Journal(tmp_path / "data").close()


# -- fsync policies and failures -------------------------------------------------------------


@pytest.fixture
def fdatasyncs(monkeypatch):
    """Every journal fdatasync, as the name of the thread that made it."""
    calls: list[str] = []
    real = os.fdatasync

    def counting(fd):
        calls.append(threading.current_thread().name)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    return calls


def test_always_syncs_each_append_or_once_per_group(tmp_path, fdatasyncs):
    journal, _, _ = opened(tmp_path / "data", fsync="always")
    journal.append(1)
    journal.append(2)
    assert len(fdatasyncs) == 2
    for n in range(3, 11):
        journal.append(n, sync=False)
    assert len(fdatasyncs) == 2
    journal.sync()
    journal.sync()  # nothing new: no fsync
    assert len(fdatasyncs) == 3
    journal.close()
    assert len(fdatasyncs) == 3


def test_no_syncs_only_on_close(tmp_path, fdatasyncs):
    journal, _, _ = opened(tmp_path / "data", fsync="no")
    for n in range(10):
        journal.append(n)
    journal.sync()
    assert fdatasyncs == []
    journal.close()
    assert len(fdatasyncs) == 1


def test_everysec_thread_flushes_appends_and_idles_when_clean(tmp_path, fdatasyncs, monkeypatch):
    monkeypatch.setattr(Journal, "everysec_interval", 0.05)
    journal, _, _ = opened(tmp_path / "data", fsync="everysec")
    journal.append(1)
    journal.append(2)
    journal.sync()  # the policy's job, not the caller's
    deadline = time.monotonic() + 5
    while not fdatasyncs and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    flushed = len(fdatasyncs)
    time.sleep(0.3)  # several intervals with nothing new: no fsync
    assert len(fdatasyncs) == flushed
    assert 1 <= flushed <= 2
    assert set(fdatasyncs) == {"pyzdb-journal-fsync"}
    journal.append(3)
    journal.close()  # the thread or close itself flushes the last append, once
    assert len(fdatasyncs) == flushed + 1
    assert reopen(tmp_path / "data")[1] == [(1, 1), (2, 2), (3, 3)]


def test_an_fsync_in_flight_blocks_neither_appends_nor_a_checkpoint(tmp_path, monkeypatch):
    """`sync()` fdatasyncs outside the mutex, on a duplicate of the segment's descriptor: the
    loop appends (and may checkpoint, which closes that segment) while a sync thread waits for
    the disk, and the sync claims durable only what was appended before it started."""
    directory = tmp_path / "data"
    journal, _, _ = opened(directory, fsync="always")
    entered, release = threading.Event(), threading.Event()
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        if threading.current_thread().name == "slow-sync":  # the disk is slow for this one
            entered.set()
            assert release.wait(10)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    errors: list[BaseException] = []

    def in_flight() -> threading.Thread:
        def run() -> None:
            try:
                journal.sync()
            except BaseException as exc:  # reported by the assertions below
                errors.append(exc)

        entered.clear()
        release.clear()
        thread = threading.Thread(target=run, name="slow-sync")
        thread.start()
        assert entered.wait(5)
        return thread

    for n in range(1, 4):
        journal.append(n, sync=False)
    syncing = in_flight()
    started = time.monotonic()
    assert journal.append(4, sync=False) == 4
    assert time.monotonic() - started < 1, "the append waited for the fsync in flight"
    assert journal.durable_seq == 0, "nothing is durable before an fdatasync returns"
    release.set()
    syncing.join(5)
    assert journal.durable_seq == 3, "the sync covers what was appended before it began"

    syncing = in_flight()  # now covering record 4
    started = time.monotonic()
    journal.checkpoint("state@4")  # fsyncs itself, starts segment 5, closes segment 1's fd
    journal.append(5, sync=False)
    assert time.monotonic() - started < 1
    assert journal.durable_seq == 4
    release.set()
    syncing.join(5)
    assert errors == [] and journal.durable_seq == 4, "the duplicate outlived the close"
    journal.sync()
    assert journal.durable_seq == 5
    journal.close()
    assert reopen(directory) == ("state@4", [(5, 5)])


def test_durable_seq_follows_each_policy(tmp_path, fdatasyncs, monkeypatch):
    monkeypatch.setattr(Journal, "everysec_interval", 0.05)
    journal, _, _ = opened(tmp_path / "no", fsync="no")
    journal.append(1)
    journal.sync()
    assert (journal.last_seq, journal.durable_seq) == (1, 0)
    journal.checkpoint("state")  # a checkpoint syncs the journal first, under every policy
    assert journal.durable_seq == 1
    journal.close()
    journal, _, _ = opened(tmp_path / "everysec", fsync="everysec")
    journal.append(1)
    deadline = time.monotonic() + 5
    while journal.durable_seq < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert journal.durable_seq == 1 and 0 < journal.fsync_seconds < 1
    journal.close()


def test_recovery_under_always_makes_the_replayed_tail_durable(tmp_path, fdatasyncs):
    """Records a process appended without an fsync before it died may be in the page cache
    only: a server that replays them must not show them to anybody before they are durable."""
    directory = tmp_path / "data"
    journal, _, _ = opened(directory, fsync="always")
    for n in range(1, 4):
        journal.append(n, sync=False)
    journal._state = "closed"  # as if the process died here: no fsync at close
    os.close(journal._fd)
    os.close(journal._lock_fd)
    synced = len(fdatasyncs)
    journal, _, records = opened(directory, fsync="always")
    assert records == [(1, 1), (2, 2), (3, 3)]
    assert len(fdatasyncs) == synced + 1 and journal.durable_seq == 3
    journal.close()


def test_failed_fsync_breaks_the_journal_for_good(tmp_path, monkeypatch):
    journal, _, _ = opened(tmp_path / "data", fsync="always")
    journal.append(1)
    real = os.fdatasync

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(Error, match="fsync failed"):
        journal.append(2)
    monkeypatch.setattr(os, "fdatasync", real)  # even once the disk "recovers"...
    with pytest.raises(Error, match="writes are refused"):
        journal.append(3)
    with pytest.raises(Error, match="writes are refused"):
        journal.checkpoint("state")
    journal.close()
    assert reopen(tmp_path / "data")[1][0] == (1, 1)


def test_failed_write_breaks_the_journal(tmp_path, monkeypatch):
    journal, _, _ = opened(tmp_path / "data")

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(Error, match="write failed"):
        journal.append(1)
    monkeypatch.undo()
    with pytest.raises(Error, match="writes are refused"):
        journal.append(2)
    journal.close()


def test_short_write_is_completed(tmp_path, monkeypatch):
    journal, _, _ = opened(tmp_path / "data")
    real_write, calls = os.write, []

    def short(fd, data):
        calls.append(len(data))
        return real_write(fd, data[:5])

    monkeypatch.setattr(os, "write", short)
    journal.append(("a short write", 1))
    assert len(calls) > 2  # finished in several writes
    monkeypatch.undo()
    journal.append(2)
    journal.close()
    assert reopen(tmp_path / "data")[1] == [(1, ("a short write", 1)), (2, 2)]


# -- kill -9 ---------------------------------------------------------------------------------


def test_sigkill_at_random_moments_loses_no_acknowledged_record(tmp_path):
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    directory = tmp_path / "data"
    acknowledged: list[int] = []
    for run in range(5):
        child = subprocess.Popen(
            [sys.executable, str(CRASH_WRITER), str(directory), "50"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        ready, _, _ = select.select([child.stdout], [], [], 30)
        line = child.stdout.readline() if ready else ""
        assert line.startswith("ready"), (seed, run, line, child.kill(), child.communicate())
        assert int(line.split()[1]) >= max(acknowledged, default=0), (seed, run)
        time.sleep(rng.uniform(0.05, 0.3))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL, (seed, run, err)
        acknowledged += [int(seq) for seq in out.split()]
        journal, payload, records = opened(directory)
        last = journal.last_seq
        journal.close()
        state = list(payload or []) + [r[1] for _, r in records]
        assert state == list(range(1, last + 1)), (seed, run)
        assert all(r == record(seq) for seq, r in records), (seed, run)
        assert max(acknowledged, default=0) <= last, (seed, run, "an acknowledged record is lost")
    assert len(acknowledged) > 5 * 10, (seed, "the writer barely ran")
