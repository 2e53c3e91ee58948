"""The parts under the change feed and replicas, one at a time: journal retention and holds,
`install_checkpoint`, the in-memory tail of `records_since`, `changes.Shadow`, and a replica
facing a primary that sends garbage."""

from __future__ import annotations

import time

import pytest
import zmq
from server_process import ServerProcess

import pyzdb
from pyzdb.api.changes import Change, Shadow, parse_path
from pyzdb.codec import MAX_REQUEST_SIZE
from pyzdb.errors import Error
from pyzdb.net.messages import Reply, decode_request, pack
from pyzdb.storage.journal import Journal


def fresh(directory, **options) -> Journal:
    journal = Journal(directory, fsync="no")
    for name, value in options.items():
        setattr(journal, name, value)
    payload, records = journal.recover()
    assert list(records) == []
    return journal


def write(journal: Journal, count: int) -> None:
    for _ in range(count):
        journal.append(("r", journal.last_seq + 1))


# -- the journal ---------------------------------------------------------------------------------


def test_retention_keeps_the_last_n_records_and_a_checkpoint_before_them(tmp_path):
    journal = fresh(tmp_path / "d", retain=10)
    write(journal, 30)
    journal.checkpoint("at 30")
    write(journal, 30)
    journal.checkpoint("at 60")
    write(journal, 5)  # last seq 65: seqs 55.. must stay readable, and a base <= 55
    assert journal.first_seq <= 31
    assert 30 in journal.checkpoint_seqs()
    assert [seq for seq, _ in journal.records_since(55)] == list(range(56, 66))
    with pytest.raises(Error, match="dropped by a checkpoint"):
        list(journal.records_since(10))
    assert journal.read_checkpoint(30) == "at 30"
    journal.close()


def test_without_retention_a_checkpoint_drops_what_it_covers(tmp_path):
    journal = fresh(tmp_path / "d")
    write(journal, 30)
    journal.checkpoint("at 30")
    write(journal, 30)
    journal.checkpoint("at 60")
    assert journal.first_seq == 31  # the previous recovery point's journal only
    journal.close()


def test_a_hold_keeps_records_a_replica_needs(tmp_path):
    journal = fresh(tmp_path / "d", retain=5)
    journal.hold = lambda: 12
    write(journal, 30)
    journal.checkpoint("at 30")
    write(journal, 30)
    journal.checkpoint("at 60")
    assert [seq for seq, _ in journal.records_since(12)][:2] == [13, 14]
    journal.hold = None
    write(journal, 1)
    journal.checkpoint("at 61")
    with pytest.raises(Error, match="dropped"):
        journal.records_since(12)
    journal.close()


def test_install_checkpoint_starts_the_directory_over(tmp_path):
    directory = tmp_path / "d"
    journal = fresh(directory)
    write(journal, 7)
    journal.install_checkpoint(100, {"tree": 1})
    assert journal.last_seq == 100 and journal.durable_seq == 100
    assert journal.append(("r", 101)) == 101
    journal.close()
    again = Journal(directory)
    payload, records = again.recover()
    assert payload == {"tree": 1} and list(records) == [(101, ("r", 101))]
    assert sorted(p.name for p in directory.iterdir() if p.name.endswith((".ckpt", ".log"))) == [
        f"checkpoint-{100:020d}.ckpt",
        f"journal-{101:020d}.log",
    ]
    again.close()


def test_records_from_the_memory_tail_equal_those_read_back_from_disk(tmp_path):
    directory = tmp_path / "d"
    journal = fresh(directory)
    journal.recent_records = 8  # only the newest 8 in memory
    write(journal, 20)
    from_memory = list(journal.records_since(14))
    from_disk_too = list(journal.records_since(3))  # older than the tail: from the segment
    journal.close()
    again = Journal(directory)
    _, records = again.recover()
    list(records)
    assert list(again.records_since(14)) == from_memory == [(s, ("r", s)) for s in range(15, 21)]
    assert list(again.records_since(3)) == from_disk_too
    again.close()


# -- Shadow ----------------------------------------------------------------------------------------


def test_shadow_turns_whole_container_rewrites_into_replace_changes():
    shadow = Shadow(("l",), [3, 1, 2])
    assert shadow.apply(5, ("perm", ("l",), [1, 2, 0])) == [
        Change(5, ("l",), "replace", [3, 1, 2], [1, 2, 3])
    ]
    assert shadow.apply(6, ("splice", ("l",), 0, 2, [9])) == [
        Change(6, ("l",), "replace", [1, 2, 3], [9, 3])
    ]
    assert shadow.apply(7, ("clear", ("l",))) == [Change(7, ("l",), "replace", [9, 3], [])]
    assert shadow.apply(8, ("set", ("other",), "k", 1)) == []


def test_shadow_of_a_list_item_refuses_when_items_move_under_it():
    shadow = Shadow(("l", 2), "c")
    assert shadow.apply(1, ("ins", ("l",), 5, "z")) == []  # after it: nothing moves
    with pytest.raises(Error, match="watch the list itself"):
        shadow.apply(2, ("ins", ("l",), 0, "a"))


def test_parse_path_accepts_only_literal_subscripts_of_db():
    assert parse_path("db['a'][0][('t', 1)]") == ("a", 0, ("t", 1))
    assert parse_path(["a", 1]) == ("a", 1)
    for bad in ("db.a", "db[x]", "other['a']", "db['a'", "__import__('os')"):
        with pytest.raises(ValueError):
            parse_path(bad)


# -- a replica facing garbage --------------------------------------------------------------------


def test_a_replica_whose_primary_sends_garbage_keeps_serving(tmp_path):
    fake = zmq.Context.instance().socket(zmq.ROUTER)
    fake.setsockopt(zmq.LINGER, 0)
    uri = f"ipc://{tmp_path}/fake.sock"
    fake.bind(uri)
    try:
        with ServerProcess(tmp_path / "replica", "--replica-of", uri) as replica:
            answered = 0
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and answered < 3:
                if fake.poll(200):
                    frames = fake.recv_multipart()
                    request = decode_request(frames[-1], MAX_REQUEST_SIZE)
                    garbage = [
                        b"\x00not msgpack",
                        pack(Reply(request.id, True, "a string", 0)),
                        pack(Reply(request.id, True, {"token": 5}, 0)),
                    ][answered]
                    fake.send_multipart([frames[0], garbage])
                    answered += 1
            assert answered == 3
            with pyzdb.connect(replica.uri) as rdb:
                assert rdb.query("1 + 1") == 2
                assert rdb.info()["replication"]["state"] in ("syncing", "disconnected")
            assert replica.alive()
    finally:
        fake.close()
