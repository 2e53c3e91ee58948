"""A failed fsync stops writes, not the server (issue 9, "Journal failures").

Against a real `pyzdb-server` (supervisor and worker, real files): the worker runs with
`os.fdatasync` patched to fail with EIO once a trigger file appears in the data directory
(`FAILING_SERVER`). The write whose fsync failed gets an error and is undone in memory, the
journal cuts it off its file, later writes are refused with a clear error, reads and pings go
on from the same worker (no restart), `info` says why; and after a restart (without the
injection) the failed write is not there and writes work again. The same for `pyzdb.open`.

Before: the worker exited after the failed fsync, the supervisor restarted it, and recovery
replayed the record from the page cache: the client told "error" found its write applied.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from server_process import ServerProcess, ping

import pyzdb

#: `pyzdb-server` whose fdatasync fails (EIO) while `<data>/FAIL_FSYNC` exists, and writes the
#: name of the thread it failed in to `<data>/FAILED_IN`. Only fdatasync: the journal's own cut
#: (ftruncate + fsync) still works, as on a disk that failed one writeback. While
#: `<data>/SLOW_FSYNC` exists, each fdatasync first sleeps 2 ms: a disk slow enough for the
#: server's sync thread (`pyzdb.server.outbox.OVERLAP_FSYNC`).
FAILING_SERVER = """
import errno, os, sys, threading, time
data = sys.argv[sys.argv.index("--data") + 1]
trigger, slow = os.path.join(data, "FAIL_FSYNC"), os.path.join(data, "SLOW_FSYNC")
real = os.fdatasync
def fdatasync(fd):
    if os.path.exists(slow):
        time.sleep(0.002)
    if os.path.exists(trigger):
        with open(os.path.join(data, "FAILED_IN"), "a") as out:
            out.write(threading.current_thread().name + "\\n")
        raise OSError(errno.EIO, "Input/output error (injected)")
    return real(fd)
os.fdatasync = fdatasync
from pyzdb.server.main import server_main
sys.exit(server_main(sys.argv[1:]))
"""


class FailingServer(ServerProcess):
    """A `ServerProcess` started through `FAILING_SERVER` (a real process, not the zygote)."""

    def start(self, timeout: float = 20.0) -> ServerProcess:
        self.killed = False
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", FAILING_SERVER, *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while not ping(self.uri, 0.1):
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not answer within {timeout} s:\n{self.log()}")
        return self


def worker_pids(server: ServerProcess) -> list[int]:
    return [int(pid) for pid in re.findall(r"worker pid (\d+) serves", server.log())]


REFUSED = (
    "writes are refused until the server is restarted: "
    "the journal could not make writes durable: .*Input/output error"
)


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_a_failed_fsync_undoes_the_write_and_refuses_later_ones_without_a_restart(tmp_path, fsync):
    data_dir = tmp_path / "data"
    server = FailingServer(data_dir, "--fsync", fsync)
    with server:
        database = pyzdb.connect(server.uri, timeout=30.0)
        try:
            database["x"] = 1
            database["l"] = [1, 2]
            if fsync == "everysec":  # wait until the background fsync covered them
                wait_until(lambda: durable(database) == database.info()["server"]["seq"])
            (data_dir / "FAIL_FSYNC").touch()
            if fsync == "always":
                with pytest.raises(pyzdb.Error, match="could not make writes durable"):
                    database["x"] = 2
            else:  # acknowledged by the policy, then lost with the failed background fsync
                database["x"] = 2
                wait_until(lambda: not database.info()["server"]["writable"])
            assert database["x"].get() == 1, "the write whose fsync failed is still in memory"
            assert database["l"].get() == [1, 2]
            with pytest.raises(pyzdb.Error, match=REFUSED):
                database["y"] = 3
            with pytest.raises(pyzdb.Error, match=REFUSED):
                database.execute("db['l'].append(3)")
            database.ping()
            assert database.query("db['l'][0] + db['x']") == 2
            info = database.info()["server"]
            assert info["writable"] is False
            assert "Input/output error" in info["write_refusal"]
            assert server.alive() and len(worker_pids(server)) == 1, server.log()
            assert "restarting it" not in server.log()
        finally:
            database.close()
    (data_dir / "FAIL_FSYNC").unlink()
    with ServerProcess(data_dir) as again:
        database = pyzdb.connect(again.uri, timeout=30.0)
        try:
            assert database["x"].get() == 1, "a restart replayed the write whose fsync failed"
            assert database.info()["server"]["writable"] is True
            database["x"] = 4
            assert database["x"].get() == 4
        finally:
            database.close()


def test_a_failed_fsync_in_the_sync_thread_fails_the_waiting_write_and_refuses_later_ones(
    tmp_path,
):
    """On a slow disk the fdatasync of `--fsync always` runs in the sync thread (`Syncer`),
    whose failure reaches the loop through `Syncer.error` and the pipe it polls."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "SLOW_FSYNC").touch()
    with FailingServer(data_dir) as server:
        database = pyzdb.connect(server.uri, timeout=30.0)
        try:
            database["x"] = 1  # the first fdatasync runs in the loop: it measures the disk
            (data_dir / "FAIL_FSYNC").touch()
            with pytest.raises(pyzdb.Error, match="could not make writes durable"):
                database["x"] = 2
            assert (data_dir / "FAILED_IN").read_text().split() == ["pyzdb-sync"]
            assert database["x"].get() == 1, "the write whose fsync failed is still in memory"
            with pytest.raises(pyzdb.Error, match=REFUSED):
                database["y"] = 3
            assert database.info()["server"]["writable"] is False
            assert server.alive() and len(worker_pids(server)) == 1, server.log()
        finally:
            database.close()


def durable(database: pyzdb.Database) -> int:
    return database.info()["server"]["durable_seq"]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_embedded_database_undoes_a_write_whose_fsync_failed(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    database = pyzdb.open(data_dir)
    try:
        database["x"] = 1
        database.execute("db['h'] = []")
        database.execute("db['h'].append(1)")
        database.undo()  # undo and redo records are taken back as well as units
        real = os.fdatasync

        def failing(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "fdatasync", failing)
        with pytest.raises(pyzdb.Error, match="fsync failed"):
            database["x"] = 2
        monkeypatch.setattr(os, "fdatasync", real)  # the disk "recovers": still refused
        assert database["x"].get() == 1 and database["h"].get() == []
        with pytest.raises(pyzdb.Error, match="writes are refused until the database is reopened"):
            database["y"] = 3
        assert database.info()["server"]["writable"] is False
        assert database.query("len(db)") == 2
    finally:
        database.close()
    database = pyzdb.open(data_dir)
    try:
        assert database["x"].get() == 1 and database["h"].get() == []
        database["x"] = 4
    finally:
        database.close()
    reopened = pyzdb.open(data_dir)
    try:
        assert reopened["x"].get() == 4 and reopened["h"].get() == []
    finally:
        reopened.close()


def test_a_failed_fsync_cuts_the_journal_back_to_its_durable_end(tmp_path, monkeypatch):
    from pyzdb.storage.journal import Journal

    journal = Journal(tmp_path / "data")
    _, records = journal.recover()
    list(records)
    journal.append("durable")
    segment = next(Path(tmp_path / "data").glob("journal-*.log"))
    size = segment.stat().st_size
    journal.append("pending 1", sync=False)
    journal.append("pending 2", sync=False)
    monkeypatch.setattr(os, "fdatasync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "x")))
    with pytest.raises(pyzdb.Error, match="fsync failed"):
        journal.sync()
    monkeypatch.undo()
    assert segment.stat().st_size == size and journal.lost_after == 1
    assert journal.last_seq == 3  # until the owner took them out of memory
    journal.rewind()
    assert journal.last_seq == 1 and "make writes durable" in (journal.failure or "")
    journal.close()
    again = Journal(tmp_path / "data")
    _, records = again.recover()
    assert list(records) == [(1, "durable")]
    again.close()


def eio(fd: int) -> None:
    raise OSError(errno.EIO, "Input/output error")


def test_a_write_and_its_undo_lost_to_one_failed_fsync_are_both_taken_back(tmp_path, monkeypatch):
    """Group commit: a write and the undo of it wait for the same fsync. Taking the undo back
    redoes the unit, which must still be the one the write's record names (not "stale")."""
    from pyzdb.engine import Engine

    engine = Engine(tmp_path / "data")
    try:
        engine.run("db['x'] = 1", write=True, syntax="exec")
        engine.run("db['x'] = 2", write=True, syntax="exec", sync=False)
        assert engine.undo(sync=False)
        monkeypatch.setattr(os, "fdatasync", eio)
        with pytest.raises(pyzdb.Error, match="fsync failed"):
            engine.sync()
        monkeypatch.undo()
        assert engine.lose_undurable() is True  # both taken back: memory matches the disk
        assert engine.run("db", write=False) == {"x": 1}
        with pytest.raises(pyzdb.Error, match="writes are refused"):
            engine.run("db['z'] = 4", write=True, syntax="exec")
    finally:
        engine.close()


def test_a_locked_embedded_database_whose_fsync_failed_can_be_unlocked(tmp_path, monkeypatch):
    """The failure rolls the open transaction back; `unlock()` says so and frees the lock."""
    database = pyzdb.open(tmp_path / "data", fsync="everysec")
    try:
        database["x"] = 1
        database.checkpoint()
        monkeypatch.setattr(os, "fdatasync", eio)
        database["x"] = 5  # appended; the once-a-second fsync of it fails
        database.lock()
        wait_until(lambda: database.info()["server"]["writable"] is False)
        with pytest.raises(pyzdb.Error, match="writes are refused"):
            database.execute("db['x'] = 2")
        monkeypatch.undo()
        with pytest.raises(pyzdb.Error, match="rolled back"):
            database.unlock()
        done: list[bool] = []
        other = threading.Thread(target=lambda: done.append(database.query("db['x']") == 1))
        other.start()
        other.join(5)
        assert done == [True]  # another thread gets the database: the lock was released
    finally:
        database.close()


#: A process out of file descriptors (RLIMIT_NOFILE lowered to the ones it holds, the gaps
#: filled) syncs its journal under `always` (group commit: `sync()`) and under `everysec` (the
#: background thread): each fsync must get by without the duplicate descriptor it usually
#: takes. Prints "<policy> <durable_seq> <last_seq> <failure>" for each. A child process, so
#: that no other thread of the test process meets EMFILE meanwhile.
OUT_OF_DESCRIPTORS = """
import errno, os, resource, sys, time
from pyzdb.storage.journal import Journal
Journal.everysec_interval = 0.02

def exhaust():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (held + 1, hard))
    fillers = []
    while True:
        try:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE
            break
    try:
        os.dup(0)
    except OSError as exc:
        assert exc.errno == errno.EMFILE
    else:
        raise AssertionError("a descriptor was left")
    def restore():
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return restore

for policy in ("always", "everysec"):
    journal = Journal(os.path.join(sys.argv[1], policy), fsync=policy)
    _, records = journal.recover()
    list(records)
    journal.append("one", sync=False)
    journal.append("two", sync=False)
    restore = exhaust()
    try:
        if policy == "always":
            try:
                journal.sync()
            except Exception as exc:
                print("sync raised:", exc)
        else:
            deadline = time.monotonic() + 5
            while journal.durable_seq < 2 and journal.failure is None:
                assert time.monotonic() < deadline, "the everysec thread did not sync"
                time.sleep(0.01)
    finally:
        restore()
    print(policy, journal.durable_seq, journal.last_seq, journal.failure)
    journal.append("three")
    journal.close()
"""


def test_a_process_out_of_descriptors_still_fsyncs_its_journal(tmp_path):
    """EMFILE on the `os.dup` before a background fsync says nothing about the data: the
    fsync runs on the segment's own descriptor instead. Before, it broke the journal as a
    failed fsync would (writes refused, the records after the durable one cut and undone)."""
    done = subprocess.run(
        [sys.executable, "-c", OUT_OF_DESCRIPTORS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == ["always 2 2 None", "everysec 2 2 None"], done.stderr
