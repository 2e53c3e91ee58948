"""Replicas (`pyzdb-server --replica-of`) with real processes: catching up, crashes of either
side, divergence, retention, promotion, read routing and read-your-writes.

"Identical" is checked the strong way: the whole tree read from the replica equals the
primary's, and the replica has applied the primary's last seq.
"""

from __future__ import annotations

import shutil
import threading
import time

import pytest
import zmq
from server_process import ServerProcess

import pyzdb


def info_of(uri):
    with pyzdb.connect(uri, timeout=10) as db:
        return db.info()


def wait_identical(primary, replica, timeout=60.0):
    """Wait until the replica applied the primary's last seq; then compare the trees."""
    with (
        pyzdb.connect(primary.uri, timeout=10) as pdb,
        pyzdb.connect(replica.uri, timeout=10) as rdb,
    ):
        target = pdb.info()["server"]["seq"]
        deadline = time.monotonic() + timeout
        while rdb.info()["replication"]["applied_seq"] < target:
            assert time.monotonic() < deadline, (rdb.info(), replica.log())
            time.sleep(0.02)
        assert rdb.info()["replication"]["applied_seq"] == target
        assert rdb.query("db") == pdb.query("db")
        return target


def fill(uri, count, start=0):
    with pyzdb.connect(uri, timeout=20) as db:
        for i in range(start, start + count, 50):
            db.execute(
                "for j in range(a, b): db['r'][j % 300] = {'id': j, 'v': j * 2}",
                a=i,
                b=min(i + 50, start + count),
            )


class Writer(threading.Thread):
    """Writes until stopped; survives its server's crash (the client retries)."""

    def __init__(self, uri):
        super().__init__()
        self.uri = uri
        self.stop = threading.Event()
        self.count = 0

    def run(self):
        with pyzdb.connect(self.uri, timeout=30) as db:
            while not self.stop.is_set():
                db.execute("db['w'].append(n)", n=self.count)
                self.count += 1


@pytest.fixture
def primary(tmp_path):
    with ServerProcess(tmp_path / "primary") as server:
        with pyzdb.connect(server.uri) as db:
            db["r"] = {}
            db["w"] = []
        yield server


def test_replica_catches_up_from_empty_and_streams(primary, tmp_path):
    fill(primary.uri, 500)
    with ServerProcess(tmp_path / "replica", "--replica-of", primary.uri) as replica:
        wait_identical(primary, replica)
        fill(primary.uri, 500, 500)  # now by streaming
        seq = wait_identical(primary, replica)
        state = info_of(replica.uri)["replication"]
        assert state["state"] == "streaming" and state["primary"] == primary.uri
        assert state["lag_records"] == 0
        deadline = time.monotonic() + 10  # the primary learns it from the next pull
        while [r["applied_seq"] for r in info_of(primary.uri)["replication"]["replicas"]] != [seq]:
            assert time.monotonic() < deadline, info_of(primary.uri)
            time.sleep(0.02)
        assert replica.log().count("installed a snapshot") == 1


def test_replica_bootstraps_from_a_checkpoint_that_dropped_the_journal(tmp_path):
    with ServerProcess(tmp_path / "primary", "--retain-journal", "5") as primary:
        with pyzdb.connect(primary.uri) as db:
            db["r"] = {}
            fill(primary.uri, 300)
            db.checkpoint()
            fill(primary.uri, 300, 300)
            db.checkpoint()
            assert db.info()["server"]["first_retained_seq"] > 2
        with ServerProcess(tmp_path / "replica", "--replica-of", primary.uri) as replica:
            wait_identical(primary, replica)
            fill(primary.uri, 100, 600)
            wait_identical(primary, replica)


def test_writes_to_a_replica_are_refused_naming_the_primary(primary, tmp_path):
    with ServerProcess(tmp_path / "replica", "--replica-of", primary.uri) as replica:
        wait_identical(primary, replica)
        with pyzdb.connect(replica.uri) as rdb:
            for attempt in (
                lambda: rdb.execute("db['x'] = 1"),
                rdb.undo,
                rdb.redo,
                rdb.checkpoint,
                rdb.lock,
                lambda: rdb.__setitem__("x", 1),
            ):
                with pytest.raises(pyzdb.ReadOnlyError, match=primary.uri.replace(".", r"\.")):
                    attempt()
            assert "x" not in rdb
            assert rdb.query("len(db['r'])") == 0


def test_replica_killed_mid_stream_resumes_with_no_gap(primary, tmp_path):
    with ServerProcess(tmp_path / "replica", "--replica-of", primary.uri) as replica:
        writer = Writer(primary.uri)
        writer.start()
        try:
            for _ in range(3):
                time.sleep(0.5)
                replica.kill()
                time.sleep(0.2)
                replica.restart()
        finally:
            writer.stop.set()
            writer.join()
        wait_identical(primary, replica)
        with pyzdb.connect(replica.uri) as rdb:
            assert rdb.query("db['w']") == list(range(writer.count))
        assert replica.log().count("installed a snapshot") == 1  # resumed, never restarted


def test_primary_killed_under_write_load_then_the_replica_continues(primary, tmp_path):
    with ServerProcess(tmp_path / "replica", "--replica-of", primary.uri) as replica:
        writer = Writer(primary.uri)
        writer.start()
        try:
            time.sleep(0.7)
            primary.kill()
            time.sleep(0.3)
            primary.restart()
            time.sleep(0.7)
        finally:
            writer.stop.set()
            writer.join()
        wait_identical(primary, replica)
        with pyzdb.connect(replica.uri) as rdb:
            assert rdb.query("db['w']") == list(range(writer.count))


@pytest.mark.parametrize("backlog", [10, 1000])
def test_a_replica_away_is_held_records_within_its_backlog_else_resyncs(tmp_path, backlog):
    """The primary keeps what a known replica still needs, up to --replica-backlog records."""
    with ServerProcess(
        tmp_path / "primary", "--retain-journal", "5", "--replica-backlog", str(backlog)
    ) as primary:
        with pyzdb.connect(primary.uri) as db:
            db["r"] = {}
        with ServerProcess(tmp_path / "replica", "--replica-of", primary.uri) as replica:
            wait_identical(primary, replica)
            assert replica.stop() == 0, replica.log()
            with pyzdb.connect(primary.uri) as db:
                fill(primary.uri, 600)
                db.checkpoint()
                fill(primary.uri, 600, 600)
                db.checkpoint()
                first = db.info()["server"]["first_retained_seq"]
                assert first > 2 if backlog == 10 else first <= 2
            replica.restart()
            wait_identical(primary, replica)
            if backlog == 10:  # 25 records behind: past the backlog
                assert replica.log().count("installed a snapshot") == 2
                assert "past the backlog" in primary.log()
                assert "behind the retained journal" in primary.log()
            else:  # held for it: the replica resumes from its own journal
                assert replica.log().count("installed a snapshot") == 1


def test_a_diverged_replica_is_detected_and_resyncs(tmp_path):
    with ServerProcess(tmp_path / "primary") as primary:
        fill_dict = "db['r'] = {}"
        with pyzdb.connect(primary.uri) as db:
            db.execute(fill_dict)
        fill(primary.uri, 100)
        assert primary.stop() == 0, primary.log()
        shutil.copytree(tmp_path / "primary", tmp_path / "backup")
        primary.restart()
        with ServerProcess(tmp_path / "replica", "--replica-of", primary.uri) as replica:
            fill(primary.uri, 100, 100)  # the replica sees these...
            wait_identical(primary, replica)
            assert primary.stop() == 0, primary.log()
            shutil.rmtree(tmp_path / "primary")
            # ...which the restore drops
            shutil.copytree(tmp_path / "backup", tmp_path / "primary")
            (tmp_path / "primary" / "LOCK").unlink()
            primary.restart()
            with pyzdb.connect(primary.uri) as db:  # and a different history is written on top
                for i in range(150):
                    db.execute("db['r'][k] = 'other'", k=i)
            wait_identical(primary, replica)
            assert replica.log().count("installed a snapshot") == 2
            with pyzdb.connect(replica.uri) as rdb:
                assert rdb.query("db['r'][0]") == "other"


def test_read_your_writes_through_read_uris_for_1000_pairs(primary, tmp_path):
    with (
        ServerProcess(tmp_path / "r1", "--replica-of", primary.uri) as one,
        ServerProcess(tmp_path / "r2", "--replica-of", primary.uri) as two,
    ):
        wait_identical(primary, one)
        wait_identical(primary, two)
        with pyzdb.connect(primary.uri, read_uris=[one.uri, two.uri], timeout=10) as db:
            for i in range(1000):
                db["r"]["n"] = i
                assert db["r"]["n"].get() == i
            assert db.last_seq >= 1000
            assert db.wait_replicas(2, 10.0) == 2
        for replica in (one, two):
            served = info_of(replica.uri)["replication"]["applied_seq"]
            assert served >= 1000


def test_reads_skip_a_replica_that_does_not_answer(primary, tmp_path):
    with ServerProcess(tmp_path / "replica", "--replica-of", primary.uri) as replica:
        wait_identical(primary, replica)
        with pyzdb.connect(primary.uri, read_uris=[replica.uri], timeout=10) as db:
            db["r"]["x"] = 1
            replica.kill()
            started = time.monotonic()
            assert db["r"]["x"].get() == 1  # from the primary, after one short attempt (2 s)
            assert time.monotonic() - started < 8  # not after the whole timeout of 10 s
            assert db["r"]["x"].get() == 1  # and the dead replica is skipped at once
            db["r"]["y"] = 2  # (the replica may have acknowledged x before it died)
            assert db.wait_replicas(1, 0.3) == 0


def test_eventual_consistency_reads_without_waiting(primary, tmp_path):
    with ServerProcess(tmp_path / "replica", "--replica-of", primary.uri) as replica:
        wait_identical(primary, replica)
        with pyzdb.connect(primary.uri, read_uris=[replica.uri], consistency="eventual") as db:
            db["r"]["x"] = 1
            assert db.query("1 + 1") == 2
        with pytest.raises(ValueError, match="consistency"):
            pyzdb.connect(primary.uri, consistency="strong")


def test_promotion_by_hand(primary, tmp_path):
    with ServerProcess(tmp_path / "replica", "--replica-of", primary.uri) as replica:
        fill(primary.uri, 100)
        wait_identical(primary, replica)
        old_history = info_of(primary.uri)["replication"]["history"]
        with pyzdb.connect(primary.uri) as db:
            before = db.query("db")
        assert primary.stop() == 0, primary.log()
        assert replica.stop() == 0, replica.log()
    with ServerProcess(tmp_path / "replica") as promoted:  # no --replica-of
        with pyzdb.connect(promoted.uri) as db:
            assert db.query("db") == before
            info = db.info()["replication"]
            assert info["role"] == "primary" and info["history"] != old_history
            db["r"]["new"] = 1
            assert db["r"]["new"].get() == 1


@pytest.mark.parametrize("when", ["streamed", "in the snapshot"])
def test_a_write_retried_after_promotion_is_applied_once(primary, tmp_path, when):
    from test_feed import _raw_execute

    with pyzdb.connect(primary.uri) as db:
        db["n"] = 0
    replica = ServerProcess(tmp_path / "replica", "--replica-of", primary.uri)
    session = b"p" * 16
    try:
        if when == "streamed":
            replica.start()
        first = _raw_execute(primary.uri, session, 3, "db['n'] += 1\ndb['n']")
        assert first.value == 1
        if when != "streamed":
            replica.start()  # the replica gets the write inside its snapshot
        wait_identical(primary, replica)
        assert replica.log().count("installed a snapshot") == 1
        primary.kill()
        assert replica.stop() == 0, replica.log()
    finally:
        replica.close()
    with ServerProcess(tmp_path / "replica") as promoted:
        again = _raw_execute(promoted.uri, session, 3, "db['n'] += 1\ndb['n']")
        assert again.ok and again.value == 1
        with pyzdb.connect(promoted.uri) as db:
            assert db["n"].get() == 1


def test_blobs_are_copied_and_a_watch_fails_over_to_a_replica(primary, tmp_path):
    with ServerProcess(tmp_path / "replica", "--replica-of", primary.uri) as replica:
        with pyzdb.connect(primary.uri) as db:
            db["files"] = {"a": pyzdb.File.from_bytes(b"hello blob", "a.txt")}
            watch = db.watch("db['files']")
            initial = next(watch)
            db["files"]["b"] = 2
            (change,) = [next(watch)]
        wait_identical(primary, replica)
        with pyzdb.connect(replica.uri) as rdb:
            assert rdb["files"]["a"].get().read() == b"hello blob"
            resumed = rdb.watch("db['files']", since=initial.seq)
            assert next(resumed) == change


def test_asyncio_client_reads_its_writes_from_a_replica_and_waits_for_it(primary, tmp_path):
    import asyncio

    import pyzdb.net.aio

    with ServerProcess(tmp_path / "replica", "--replica-of", primary.uri) as replica:
        wait_identical(primary, replica)

        async def run():
            async with pyzdb.net.aio.connect(primary.uri, read_uris=[replica.uri]) as db:
                seen = []
                for i in range(50):
                    await db["r"]["n"].set(i)
                    seen.append(await db["r"]["n"].get())
                replicas = await db.wait_replicas(1, 10.0)
                info = await db.info()
                return seen, replicas, info, db.last_seq

        seen, replicas, info, last = asyncio.run(run())
        assert seen == list(range(50))
        assert replicas == 1
        assert info["replication"]["replicas"][0]["applied_seq"] >= last


def test_a_torn_tail_cut_by_recovery_renews_the_history_id(primary, tmp_path):
    before = info_of(primary.uri)["replication"]["history"]
    assert primary.stop() == 0
    primary.restart()
    assert info_of(primary.uri)["replication"]["history"] == before  # a clean restart keeps it
    assert primary.stop() == 0, primary.log()
    last = sorted((tmp_path / "primary").glob("journal-*.log"))[-1]
    with open(last, "ab") as handle:
        handle.write(b"\x10\x00\x00\x00torn")  # half a frame: what a crash mid-write leaves
    primary.restart()
    assert "cut a torn tail" in primary.log()
    assert info_of(primary.uri)["replication"]["history"] != before


# -- a primary with --keys ------------------------------------------------------------------------


def _wait_log(server, text, timeout=30.0):
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, server.log()
        assert server.alive(), server.log()
        time.sleep(0.05)


@pytest.fixture
def keyed_primary(tmp_path):
    from keyed import Keyring

    keyring = Keyring(tmp_path / "keyring")
    with keyring.server(tmp_path / "primary") as server:
        with pyzdb.connect(server.uri, timeout=10, key=keyring.key("admin")) as db:
            db["r"] = {"a": [1, 2, 3]}
        yield server, keyring


def test_a_replica_follows_a_keyed_primary_with_an_admin_key(keyed_primary, tmp_path):
    primary, keyring = keyed_primary
    admin = keyring.key("admin")
    replica_args = ("--replica-of", primary.uri, "--key", admin)
    with (
        ServerProcess(tmp_path / "replica", *replica_args) as replica,
        pyzdb.connect(primary.uri, timeout=10, key=admin) as pdb,
        pyzdb.connect(replica.uri, timeout=10) as rdb,
    ):
        for n in range(20):
            pdb.execute("db['r'][n] = n * 2", n=n)
        target = pdb.info()["server"]["seq"]
        deadline = time.monotonic() + 30
        while rdb.info()["replication"]["applied_seq"] < target:
            assert time.monotonic() < deadline, replica.log()
            time.sleep(0.02)
        assert rdb.query("db") == pdb.query("db")
        assert rdb.query("db['r'][19]") == 38
        assert rdb.info()["replication"]["state"] == "streaming"


@pytest.mark.parametrize("key", ["reader", None])
def test_a_replica_whose_key_the_primary_refuses_says_so_and_keeps_running(
    keyed_primary, tmp_path, key
):
    primary, keyring = keyed_primary
    args = ["--key", keyring.key(key)] if key else []
    with ServerProcess(tmp_path / "replica", "--replica-of", primary.uri, *args) as replica:
        _wait_log(replica, "refused this replica")
        expected = "needs the admin role" if key else "requires a key"
        assert expected in replica.log() and "--key FILE" in replica.log()
        with pyzdb.connect(replica.uri, timeout=10) as rdb:
            assert rdb.info()["replication"]["state"] == "refused"
            rdb.ping()
        assert replica.alive()
        assert replica.log().count("refused this replica") == 1  # said once, not every retry
        assert replica.stop() == 0, replica.log()


def test_the_fetch_thread_never_blocks_on_a_socket_without_a_peer():
    """libzmq drops the only peer of a socket whose CURVE handshake failed and does not
    reconnect (`curve.configure`), so a blocking send there waits forever. A replica's fetch
    thread slow to send its first request (a loaded machine) hung so, silent: the replica never
    said the primary refused it. Whether a failed handshake drops the peer depends on timing, so
    the test gives `_ask` the state it leaves, a socket without any peer: it must answer
    `_NoAnswer` (the refusal is then read from the socket's monitor) at once."""
    from pyzdb.server.fetch import Fetcher, _NoAnswer

    fetcher = Fetcher(None, None, None, None)  # `_ask` uses none of them
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDTIMEO, 5000)  # before the mend: blocked 5 s, not forever
    try:
        started = time.monotonic()
        with pytest.raises(_NoAnswer):
            fetcher._ask(socket, "ping", {})
        assert time.monotonic() - started < 2.5, "the send blocked until SNDTIMEO"
    finally:
        socket.close(linger=0)


def test_key_without_replica_of_is_a_usage_error(tmp_path, capsys):
    from pyzdb.server import server_main

    assert server_main(["--data", str(tmp_path / "d"), "--key", "x.pyzdb-key"]) == 2
    assert "--replica-of" in capsys.readouterr().err
