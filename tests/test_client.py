"""`pyzdb.connect` and `pyzdb.net.aio.connect` against live server processes.

Covers what only a remote database has: retries through a server restart that apply a write
once, timeouts that never hang, the lock as a lease (queued waiters, a dead holder rolled back,
an idle holder kept alive by its heartbeat), many client processes contending, read routing,
and the asyncio client. Behaviour common to every kind of database is in test_database.py
(the `db` fixture runs it remotely too).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import zmq
from server_process import ServerProcess, free_tcp_uri

import pyzdb
import pyzdb.net.aio
from pyzdb.codec import MAX_REPLY_SIZE, MAX_REQUEST_SIZE, encode_value
from pyzdb.net.client import Connection
from pyzdb.net.errorinfo import ErrorInfo
from pyzdb.net.messages import Reply, Request, decode_reply, decode_request, pack


@pytest.fixture
def server(tmp_path):
    with ServerProcess(tmp_path / "data", "--lease", "1") as running:
        yield running


def run_clients(code: str, uri: str, count: int) -> list[subprocess.Popen[str]]:
    """Start `count` client processes running `code` with `uri` and `index` defined."""
    processes = []
    for index in range(count):
        prelude = f"import pyzdb\nuri = {uri!r}\nindex = {index}\n"
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", prelude + textwrap.dedent(code)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return processes


def wait_all(processes: list[subprocess.Popen[str]], timeout: float = 120) -> None:
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, f"client failed:\n{out}\n{err}"


# -- the seed's README (its session, across a restart: test_database.py) ------------------------


def test_readme_library_and_lock_examples(server):
    db = pyzdb.connect(server.uri)
    db["x"] = 3
    x = db["x"]._run()
    db["l"] = list(range(10))
    assert db.query("[v*v for v in db['l'] if v%2]") == [1, 9, 25, 49, 81]
    assert db.query(lambda db: [v * v for v in db["l"] if v % 2]) == [1, 9, 25, 49, 81]
    db.save()
    db.lock()
    x = db["x"]._run()
    db["x"] = x + 1
    db.unlock()
    assert db["x"].get() == 4
    db.close()


# -- contention ------------------------------------------------------------------------------


def test_eight_processes_increment_exactly_4000_times(server):
    pyzdb.connect(server.uri).execute("db['c'] = 0")
    started = time.monotonic()
    wait_all(
        run_clients(
            """
        db = pyzdb.connect(uri)
        for _ in range(500):
            db.execute("db['c'] += 1")
    """,
            server.uri,
            8,
        )
    )
    elapsed = time.monotonic() - started
    assert pyzdb.connect(server.uri)["c"].get() == 4000
    print(f"8 clients x 500 durable += 1 in {elapsed:.2f} s (incl. process start)")


def test_read_modify_write_transactions_from_several_processes(server):
    pyzdb.connect(server.uri)["c"] = 0
    wait_all(
        run_clients(
            """
        db = pyzdb.connect(uri, timeout=30)
        for _ in range(60):
            with db.transaction():
                x = db['c'].get()
                db['c'] = x + 1
    """,
            server.uri,
            6,
        )
    )
    assert pyzdb.connect(server.uri)["c"].get() == 360


# -- failures: restarts, retries, timeouts --------------------------------------------------------


def test_client_survives_kill_9_of_the_server(server):
    db = pyzdb.connect(server.uri)
    db["a"] = 1
    server.kill()
    server.restart()
    assert db["a"].get() == 1, "the acknowledged write survived kill -9"
    db["a"] += 1
    assert db["a"].get() == 2


def test_a_write_retried_through_a_restart_is_applied_once(server):
    db = pyzdb.connect(server.uri, timeout=15)
    db["n"] = 0
    server.kill()
    result: list[object] = []
    writer = threading.Thread(target=lambda: result.append(db.execute("db['n'] += 1\ndb['n']")))
    writer.start()
    time.sleep(0.8)  # several resends go nowhere meanwhile
    server.restart()
    writer.join(20)
    assert result == [1]
    assert db["n"].get() == 1


def test_a_repeated_request_id_is_answered_not_run_again(server):
    """At-most-once: the same (session, id) sent again, over a new socket, as a retry is."""
    request = Request(
        7, "execute", "db['n'] = db.get('n', 0) + 1\ndb['n']", syntax="exec", session=os.urandom(16)
    )
    answers = []
    for _ in range(3):
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(server.uri)
        sock.send_multipart([b"", pack(request)])
        assert sock.poll(5000), "no reply"
        answers.append(sock.recv_multipart()[1])
        sock.close()
    assert answers[0] == answers[1] == answers[2]
    assert decode_reply(answers[0], MAX_REPLY_SIZE).value == 1
    assert pyzdb.connect(server.uri)["n"].get() == 1


@pytest.mark.parametrize("client", ["sync", "asyncio"])
def test_a_request_is_one_frame_and_a_reply_may_carry_a_delimiter(client):
    """The client sends no REQ-style empty delimiter (one frame less each way); the server's
    ROUTER answers with the envelope it got. A reply `[b"", frame]` is accepted too, and a reply
    of any other shape is dropped (the request goes on waiting for a good one)."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    uri = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
    seen: list[list[bytes]] = []

    def serve() -> None:
        for answer in ("plain", "delimited", "bad-then-plain"):
            assert router.poll(10_000)
            frames = router.recv_multipart()
            seen.append(frames)
            request = decode_request(frames[-1], MAX_REQUEST_SIZE)
            reply = pack(Reply(request.id, True, answer))
            identity = frames[0]
            if answer == "delimited":
                router.send_multipart([identity, b"", reply])
            elif answer == "bad-then-plain":
                router.send_multipart([identity, b"x", reply])
                router.send_multipart([identity, b"", b"", reply])
                router.send_multipart([identity, reply])
            else:
                router.send_multipart([identity, reply])

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        if client == "sync":
            db = pyzdb.connect(uri, timeout=5)
            answers = [db.query("1"), db.query("1"), db.query("1")]
            db.close()
        else:

            async def run() -> list[object]:
                async with pyzdb.net.aio.connect(uri, timeout=5) as db:
                    return [await db.query("1") for _ in range(3)]

            answers = asyncio.run(run())
    finally:
        thread.join(10)
        router.close()
    assert answers == ["plain", "delimited", "bad-then-plain"]
    assert [len(frames) for frames in seen] == [2, 2, 2], "identity + one frame, no delimiter"


@pytest.mark.parametrize("uri", ["ipc:///tmp/pyzdb-nobody-listens-here.sock", free_tcp_uri()])
def test_a_dead_uri_raises_connection_error_within_the_timeout(uri):
    db = pyzdb.connect(uri, timeout=0.6)
    started = time.monotonic()
    with pytest.raises(pyzdb.ConnectionError) as caught:
        db["x"].get()
    elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 0.6 + 0.5
    assert uri in str(caught.value) and "0.6 s" in str(caught.value)
    assert isinstance(caught.value, ConnectionError)  # the builtin family too
    db.close()


def test_a_request_over_the_size_limit_is_refused_before_it_travels(server):
    db = Connection(server.uri, max_message=1024)
    with pytest.raises(pyzdb.ProtocolError, match="over the limit of 1024"):
        db["blob"] = b"x" * 2048
    db["small"] = b"x" * 10
    assert db.get() == {"small": b"x" * 10}


def test_a_request_the_server_drops_as_oversized_times_out_cleanly(tmp_path):
    with ServerProcess(tmp_path / "data", "--max-message", "65536") as server:
        db = pyzdb.connect(server.uri, timeout=1)
        started = time.monotonic()
        with pytest.raises(pyzdb.ConnectionError, match="--max-message"):
            db["big"] = b"x" * 100_000
        assert time.monotonic() - started < 1.5
        db["small"] = 1
        assert db.get() == {"small": 1}


def test_a_parameter_may_have_the_name_protocol_1_reserved(server):
    """Lock control travelled as the query parameter `pyzdb_control` in protocol 1; in protocol
    2 it is the request's own fields, so a query may use the name."""
    db = pyzdb.connect(server.uri)
    assert db.query("pyzdb_control + 1", pyzdb_control=1) == 2
    with db.transaction():
        db.execute("db['c'] = pyzdb_control", pyzdb_control={"wait": 0, "txn": False})
    assert db["c"].get() == {"wait": 0, "txn": False}


def test_a_client_of_protocol_1_is_told_to_upgrade(server):
    """What a version-1 client sent, and what it reads back: a version-1 reply (replies kept
    that layout) refusing its request under its own id, naming both versions."""
    old_request = [1, 0, 41, "query", "1", "db", {}, "eval", b"s" * 16, 0]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.uri)
    try:
        sock.send_multipart([b"", encode_value(old_request)])
        assert sock.poll(10_000), "no reply"
        frame = sock.recv_multipart()[-1]
    finally:
        sock.close()
    assert frame[:3] == bytes((0x97, 1, 1)), "a version-1 reply, which a version-1 client reads"
    reply = decode_reply(frame, MAX_REPLY_SIZE)
    assert (reply.id, reply.ok, reply.error.type) == (41, False, "ProtocolError")
    assert reply.error.message == "client speaks protocol 1, this server speaks 2: upgrade pyzdb"
    assert pyzdb.connect(server.uri).query("1") == 1


@pytest.mark.parametrize("client", ["sync", "asyncio"])
def test_a_server_of_protocol_1_is_reported_as_older(client):
    """A version-1 server refused a later request in its own words, with id 0: the client
    raises an error naming both versions, at once."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    uri = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
    said = "protocol version 2 is not supported; this peer speaks version 1"
    refusal = pack(Reply(0, False, None, 0, ErrorInfo("ProtocolError", (said,), said)))

    def serve() -> None:
        assert router.poll(10_000)
        identity = router.recv_multipart()[0]
        router.send_multipart([identity, refusal])

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with pytest.raises(pyzdb.ProtocolError) as caught:
            if client == "sync":
                with pyzdb.connect(uri, timeout=5) as db:
                    db.query("1")
            else:

                async def run() -> None:
                    async with pyzdb.net.aio.connect(uri, timeout=5) as db:
                        await db.query("1")

                asyncio.run(run())
    finally:
        thread.join(10)
        router.close()
    expected = "client speaks protocol 2, the server speaks 1: upgrade the server's pyzdb"
    assert str(caught.value) == expected


# -- the lock as a lease ---------------------------------------------------------------------------


def test_other_clients_wait_for_the_lock_holder(server):
    holder, other = pyzdb.connect(server.uri), pyzdb.connect(server.uri)
    holder["x"] = 1
    locked = threading.Event()

    def hold() -> None:
        with holder.transaction():
            holder["x"] = 2
            locked.set()
            time.sleep(0.5)

    thread = threading.Thread(target=hold)
    thread.start()
    locked.wait(5)
    started = time.monotonic()
    assert other["x"].get() == 2, "the read waited for the commit, it did not see x=1"
    assert time.monotonic() - started >= 0.3
    thread.join()


def test_lock_timeout_while_another_client_holds_it(server):
    holder, other = pyzdb.connect(server.uri), pyzdb.connect(server.uri)
    holder.lock()
    started = time.monotonic()
    with pytest.raises(pyzdb.LockTimeout):
        other.lock(timeout=0.3)
    assert time.monotonic() - started < 1.5
    holder.unlock()
    other.lock(timeout=1)
    other.unlock()


BAD_SECONDS = [-1, float("nan"), float("inf"), 86401, True, "1"]


@pytest.mark.parametrize("timeout", BAD_SECONDS + [0])
def test_a_timeout_the_wire_cannot_carry_is_refused_when_connecting(server, timeout):
    """Not later, as a protocol error on every request: the queue wait is sent with each."""
    for connect in (pyzdb.connect, pyzdb.net.aio.connect):
        with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
            connect(server.uri, timeout=timeout)


@pytest.mark.parametrize("timeout", BAD_SECONDS)
def test_a_lock_timeout_the_wire_cannot_carry_is_refused_before_waiting(server, timeout):
    with pyzdb.connect(server.uri) as db:
        started = time.monotonic()
        with pytest.raises(ValueError, match="timeout must be None or seconds in 0..86400"):
            db.lock(timeout=timeout)
        assert time.monotonic() - started < 1 and db.query("1") == 1  # nothing held, usable

    async def locked() -> None:
        adb = pyzdb.net.aio.connect(server.uri)
        try:
            with pytest.raises(ValueError, match="seconds in 0..86400"):
                await adb.lock(timeout=timeout)
            assert await adb.query("1") == 1
        finally:
            await adb.close()

    asyncio.run(locked())


def test_a_killed_lock_holder_is_rolled_back_and_the_lock_freed(server):
    db = pyzdb.connect(server.uri)
    db["x"] = 1
    holder = run_clients(
        """
        import time
        db = pyzdb.connect(uri)
        db.lock()
        db['x'] = 99
        print('locked', flush=True)
        time.sleep(60)
    """,
        server.uri,
        1,
    )[0]
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    started = time.monotonic()
    db.lock(timeout=3)
    waited = time.monotonic() - started
    assert db["x"].get() == 1, "the dead holder's write was rolled back"
    db.unlock()
    assert waited < 1 + 1, f"the lock came free {waited:.2f} s after the holder died"
    assert "lease" in server.log()


def test_an_idle_holder_keeps_its_lease_through_the_heartbeat(server):
    db = pyzdb.connect(server.uri)
    db.lock()
    db["x"] = 1
    time.sleep(2.5)  # 2.5 leases without a request
    db["y"] = 2
    db.unlock()
    assert db.get() == {"x": 1, "y": 2}


def test_a_lost_lease_fails_the_transaction_loudly(server):
    db = pyzdb.connect(server.uri)
    db["x"] = 0
    with pytest.raises(pyzdb.LockTimeout, match="lease"):
        with db.transaction():
            db["x"] = 1
            db._heartbeat.set()  # a client frozen past its lease
            time.sleep(1.6)
            db["x"] = 2
    assert db["x"].get() == 0
    db.lock()
    db["x"] = 5
    db._heartbeat.set()
    time.sleep(1.6)
    with pytest.raises(pyzdb.LockTimeout):
        db.unlock()
    assert db["x"].get() == 0


# -- routing, files, asyncio ---------------------------------------------------------------------


def test_reads_go_to_read_uris_and_writes_to_the_primary(server, tmp_path):
    with ServerProcess(tmp_path / "replica") as replica:
        pyzdb.connect(replica.uri)["where"] = "replica"
        db = pyzdb.connect(server.uri, read_uris=[replica.uri])
        db["where"] = "primary"
        assert db.query("db['where']") == "replica"
        assert db["where"].get() == "replica"
        db.lock()
        assert db["where"].get() == "primary", "a transaction reads from the primary"
        db.unlock()
        assert pyzdb.connect(server.uri)["where"].get() == "primary"


def test_files_are_read_through_the_connection(server, tmp_path):
    path = tmp_path / "photo.bin"
    path.write_bytes(bytes(range(256)) * 10)
    db = pyzdb.connect(server.uri)
    db["files"] = {"photo": pyzdb.File(path), "n": 1}
    stored = db["files"].get()["photo"]
    assert stored.read() == path.read_bytes()
    assert db.query("[db['files']['photo']]")[0].read() == path.read_bytes()


def test_aio_client_session(server):
    async def session() -> None:
        async with pyzdb.net.aio.connect(server.uri) as db:
            assert await db.get() == {}
            await db.execute("db['x'] = 3")
            assert await db["x"].get() == 3
            await db["l"].set(list(range(10)))
            await db["l"][4].set(["a", "b", "c"])
            assert await db.undo() is True
            assert await db.query("db['l'][4]") == 4
            assert await db.redo() is True
            assert await db.query("[v for v in db['l'][4]]") == ["a", "b", "c"]
            await db["l"][4].append("d")
            assert await db["l"][4].len() == 4
            assert await db.contains("x") and not await db.contains("zz")
            assert await db.keys() == ["x", "l"]
            async with db.transaction():
                x = await db["x"].get()
                await db["x"].set(x + 1)
            assert await db["x"].get() == 4
            with pytest.raises(KeyError):
                await db.query("db['missing']")
            with pytest.raises(TypeError, match="await"):
                db["x"] = 5
            await db.save()
            assert len(await db.history()) >= 1

    asyncio.run(session())


def test_aio_tasks_wait_for_the_transaction_of_another_task(server):
    async def session() -> list[str]:
        db = pyzdb.net.aio.connect(server.uri)
        order: list[str] = []

        async def holder() -> None:
            async with db.transaction():
                await db["x"].set(1)
                await asyncio.sleep(0.3)
                order.append("commit")

        async def reader() -> None:
            await asyncio.sleep(0.05)
            assert await db["x"].get() == 1
            order.append("read")

        await asyncio.gather(holder(), reader())
        await db.close()
        return order

    assert asyncio.run(session()) == ["commit", "read"]


def test_aio_dead_uri_times_out():
    async def attempt() -> None:
        db = pyzdb.net.aio.connect(free_tcp_uri(), timeout=0.5)
        with pytest.raises(pyzdb.ConnectionError):
            await db.ping()
        await db.close()

    started = time.monotonic()
    asyncio.run(attempt())
    assert time.monotonic() - started < 1.2
