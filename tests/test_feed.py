"""The change feed (`db.watch`) and exactly-once writes across a crash.

Behaviour tests run against `pyzdb.open` and a live `pyzdb-server` (the `db` fixture); the
resumption tests kill real server processes. A watch is checked two ways: against the values
the test wrote, and for internal consistency (each change's `old` is the previous change's
`new` at that path, and replaying the changes rebuilds the database's final value).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time

import pytest
import zmq
from server_process import ServerProcess, open_database

import pyzdb
import pyzdb.net.aio
from pyzdb.codec import MAX_REPLY_SIZE
from pyzdb.net.messages import Request, decode_reply, pack


def take(watch, n):
    return list(itertools.islice(watch, n))


def test_watch_yields_the_current_value_then_every_change_with_old_and_new(db):
    db["orders"] = {"a": 1}
    db["other"] = 0
    watch = db.watch("db['orders']")
    (initial,) = take(watch, 1)
    assert (initial.op, initial.path, initial.old, initial.new) == (
        "initial",
        ("orders",),
        None,
        {"a": 1},
    )
    db["orders"]["b"] = [1, 2]
    db["other"] = 1  # outside the watched path: no change
    db["orders"]["a"] = 5
    db["orders"]["b"].append(3)
    del db["orders"]["a"]
    db.undo()  # brings "a" back: undo is a change like any other
    changes = take(watch, 5)
    assert [(c.op, c.path, c.old, c.new) for c in changes] == [
        ("insert", ("orders", "b"), None, [1, 2]),
        ("set", ("orders", "a"), 1, 5),
        ("insert", ("orders", "b", 2), None, 3),
        ("delete", ("orders", "a"), 5, None),
        ("insert", ("orders", "a"), None, 5),
    ]
    seqs = [change.seq for change in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert initial.seq < seqs[0]


def test_resuming_a_watch_leaves_the_records_it_rebuilds_from_as_they_were(db):
    """A watch resumed at a seq rebuilds the watched value from the journal's records, which
    the journal keeps in memory as appended and hands to every reader. Before, the rebuilt
    value took a record's dict (and list) as its own and applied the later records to it: the
    record then said "orders = {'a': 1, 'l': [1, 2], ...}" instead of "orders = {}", so the next
    resume from before it started from a wrong value, a replica sent it resynced (its checksum
    changed), and a replica catching up applied it as it read."""
    db["orders"] = {}
    (initial,) = take(db.watch("db['orders']"), 1)
    db["orders"]["a"] = 1
    db["orders"]["l"] = [1]
    db["orders"]["l"].append(2)
    db["orders"]["b"] = 2
    (last,) = take(db.watch("db['orders']", since=initial.seq + 3), 1)  # rebuilds from seq 1
    assert (last.op, last.path, last.new) == ("insert", ("orders", "b"), 2)
    changes = take(db.watch("db['orders']", since=initial.seq), 4)
    assert [(c.op, c.path, c.old, c.new) for c in changes] == [
        ("insert", ("orders", "a"), None, 1),
        ("insert", ("orders", "l"), None, [1]),
        ("insert", ("orders", "l", 1), None, 2),
        ("insert", ("orders", "b"), None, 2),
    ]


def test_watch_sees_the_watched_value_replaced_from_above(db):
    db["shop"] = {"orders": {"a": 1}}
    watch = db.watch(("shop", "orders"))
    assert take(watch, 1)[0].new == {"a": 1}
    db["shop"] = {"orders": {"b": 2}}
    db["shop"] = {}
    db["shop"]["orders"] = {"c": 3}
    changes = take(watch, 3)
    assert [(c.op, c.path, c.old, c.new) for c in changes] == [
        ("set", ("shop", "orders"), {"a": 1}, {"b": 2}),
        ("delete", ("shop", "orders"), {"b": 2}, None),
        ("insert", ("shop", "orders"), None, {"c": 3}),
    ]


def test_watch_resumes_after_any_seq_with_no_gap_and_no_repeat(db):
    db["l"] = []
    start = db.watch("db['l']")
    take(start, 1)
    for value in range(10):
        db["l"].append(value)
    everything = take(start, 10)
    for cut in range(len(everything)):
        resumed = db.watch("db['l']", since=everything[cut].seq)
        assert take(resumed, len(everything) - cut - 1) == everything[cut + 1 :]
        assert resumed.seq == everything[-1].seq


def test_watch_of_a_missing_path_and_bad_paths(db):
    watch = db.watch("db['nothing']['here']")
    assert take(watch, 1)[0].new is None
    db["nothing"] = {"here": 1}
    (change,) = take(watch, 1)
    assert (change.op, change.path, change.old, change.new) == (
        "insert",
        ("nothing", "here"),
        None,
        1,
    )
    with pytest.raises(ValueError, match="bad watch path"):
        db.watch("db[len(x)]")
    with pytest.raises(ValueError, match="bad watch path"):
        db.watch("os.system('x')")
    with pytest.raises(ValueError, match="since"):
        db.watch("db['x']", since=-1)


@pytest.mark.parametrize("kind", ["embedded", "remote"])
def test_watch_raises_history_lost_when_records_are_no_longer_retained(kind, data_dir):
    with open_database(kind, data_dir, "--retain-journal", "3", retain_journal=3) as (db, server):
        for value in range(40):  # seq s sets x to s - 1
            db["x"] = value
            if value in (19, 39):
                db.checkpoint()  # at seqs 20 and 40: the first drops the journal up to 20
        with pytest.raises(pyzdb.HistoryLost):
            next(db.watch("db['x']", since=2))
        with pytest.raises(pyzdb.HistoryLost):
            next(db.watch("db['x']", since=19))
        # Within retention it still resumes, with the right old value.
        (change,) = take(db.watch("db['x']", since=20), 1)
        assert (change.seq, change.old, change.new) == (21, 19, 20)
        (change,) = take(db.watch("db['x']", since=38), 1)
        assert (change.seq, change.old, change.new) == (39, 37, 38)
        if server is not None:
            with pytest.raises(pyzdb.HistoryLost):
                next(db.watch("db['x']", since=10_000))  # a seq this history never had


def _writer(uri, stop, seed):
    rng = random.Random(seed)
    db = pyzdb.connect(uri, timeout=20)
    try:
        while not stop.is_set():
            key = f"k{rng.randrange(8)}"
            action = rng.random()
            if action < 0.6:
                db.execute("db['orders'][key] = value", key=key, value=rng.randrange(1000))
            elif action < 0.8:
                db.execute("db['orders'].pop(key, None)", key=key)
            else:
                db.execute("db['orders'].setdefault('l', []).append(v)", v=rng.random())
    finally:
        db.close()


def _check_chain(changes, initial):
    """Every old value is what the previous change left there; return the rebuilt value."""
    state = dict(initial)
    for change in changes:
        key = change.path[1]
        if len(change.path) == 2:
            assert state.get(key) == change.old, change
            if change.op == "delete":
                del state[key]
            else:
                state[key] = change.new
        else:  # an append to the list under 'l'
            assert change.op == "insert" and change.path[2] == len(state[key]), change
            state[key].append(change.new)
    return state


def test_watch_resumed_100_times_under_concurrent_writers_sees_every_change_once(
    data_dir, tmp_path
):
    """Resumed at random points, on the primary and (one time in three) on a replica, and once
    across a crash of the primary."""
    with (
        ServerProcess(data_dir) as server,
        ServerProcess(tmp_path / "replica", "--replica-of", server.uri) as replica,
    ):
        db = pyzdb.connect(server.uri, timeout=20)
        rdb = pyzdb.connect(replica.uri, timeout=20)
        db["orders"] = {}
        first = db.watch("db['orders']")
        initial = take(first, 1)[0]
        # A replica starts from a snapshot of the primary. One taken after the writers began
        # (its fetch thread slow to start on a loaded machine) would not hold the records a
        # watch resumed there asks for (HistoryLost): the writers wait until it has `initial`.
        deadline = time.monotonic() + 30
        while rdb.info()["replication"]["applied_seq"] < initial.seq:
            assert time.monotonic() < deadline, replica.log()
            time.sleep(0.01)
        stop = threading.Event()
        writers = [
            threading.Thread(target=_writer, args=(server.uri, stop, seed)) for seed in range(3)
        ]
        for thread in writers:
            thread.start()
        rng = random.Random(7)
        seen = []
        since = initial.seq
        try:
            for resume in range(100):
                source = rdb if resume % 3 == 2 else db
                watch = source.watch("db['orders']", since=since)
                for change in watch:
                    seen.append(change)
                    if watch.seq == change.seq and rng.random() < 0.3:
                        break  # stop at a random point where the seq is complete
                since = watch.seq
                if resume == 50:  # and across a crash of the server
                    server.kill()
                    server.restart()
        finally:
            stop.set()
            for thread in writers:
                thread.join()
        final = db.query("db['orders']")
        last = db.last_seq
        tail = db.watch("db['orders']", since=since)
        while since < last:
            change = next(tail)
            seen.append(change)
            since = tail.seq
        reference = db.watch("db['orders']", since=initial.seq)
        expected = take(reference, len(seen))
        assert seen == expected
        assert [c.seq for c in seen] == sorted(c.seq for c in seen)
        assert _check_chain(seen, initial.new) == final
        assert len(seen) > 200
        db.close()
        rdb.close()


def test_async_watch(data_dir):
    with ServerProcess(data_dir) as server:

        async def run():
            async with pyzdb.net.aio.connect(server.uri) as db:
                await db["c"].set(0)
                watch = db.watch("db['c']")
                initial = await watch.__anext__()
                await db.execute("db['c'] += 1")
                await db.execute("db['c'] += 1")
                later = [await watch.__anext__(), await watch.__anext__()]
                return initial, later

        initial, later = asyncio.run(run())
        assert initial.new == 0
        assert [(c.old, c.new) for c in later] == [(0, 1), (1, 2)]


def test_hostile_watch_and_replicate_params_are_refused_and_the_server_serves_on(data_dir):
    with ServerProcess(data_dir) as server:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(server.uri)
        bad = [
            ("watch", {"path": "orders", "since": None}),
            ("watch", {"path": [], "since": "x"}),
            ("watch", {"path": ["a"], "since": -5}),
            ("replicate", {"after": -1, "name": "x"}),
            ("replicate", {"after": 0}),
            ("snapshot", {"token": 5}),
            ("snapshot", {"token": "nope", "offset": 0}),
        ]
        try:
            for number, (op, params) in enumerate(bad, 1):
                sock.send(pack(Request(number, op, params=params, session=b"h", wait=0.2)))
                assert sock.poll(10_000), (op, params)
                reply = decode_reply(sock.recv(), MAX_REPLY_SIZE)
                assert not reply.ok, (op, params)
        finally:
            sock.close()
        with pyzdb.connect(server.uri) as db:
            db["still"] = "serving"
            assert db["still"].get() == "serving"


# -- exactly-once across a crash -----------------------------------------------------------------


def _raw_execute(uri, session, request_id, source):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(uri)
    try:
        sock.send(
            pack(Request(request_id, "execute", source, syntax="exec", session=session, wait=1.0))
        )
        assert sock.poll(20_000)
        return decode_reply(sock.recv(), MAX_REPLY_SIZE)
    finally:
        sock.close()


@pytest.mark.parametrize("checkpoint", [False, True])
def test_a_write_retried_after_a_crash_is_applied_once(data_dir, checkpoint):
    with ServerProcess(data_dir) as server:
        with pyzdb.connect(server.uri) as db:
            db["n"] = 0
        session = b"s" * 16
        source = "db['n'] += 1\ndb['n']"
        first = _raw_execute(server.uri, session, 7, source)
        assert first.ok and first.value == 1
        if checkpoint:  # the write is now covered by a checkpoint, not replayed on recovery
            with pyzdb.connect(server.uri) as db:
                db.checkpoint()
        server.kill()  # the reply "was lost" and the server crashed: the client retries
        server.restart()
        again = _raw_execute(server.uri, session, 7, source)
        assert again.ok and again.value == 1
        other = _raw_execute(server.uri, session, 8, source)  # a new request runs
        assert other.value == 2
        with pyzdb.connect(server.uri) as db:
            assert db["n"].get() == 2


@pytest.mark.parametrize("fsync", ["everysec", "no"])
def test_watch_follows_a_database_that_does_not_fsync_every_write(data_dir, fsync):
    db = pyzdb.open(data_dir, fsync=fsync)
    try:
        watch = db.watch("db['x']")
        take(watch, 1)
        db["x"] = 1
        (change,) = take(watch, 1)
        assert (change.op, change.new) == ("insert", 1)
    finally:
        db.close()
