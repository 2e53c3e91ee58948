"""A request that is merely slow is evaluated once and its reply delivered (pyzdb.net.liveness).

The client resends only after the connection dropped, never because a reply is late: the
server is counted evaluating each request (its `-v` log has one line per evaluation), and a
server killed in the middle of a slow request is detected by the connection and the request
resent to its successor.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest
from server_process import ServerProcess, ping

import pyzdb
import pyzdb.net.aio

#: A read of a few seconds on a quiet machine (more under load: the server's time budget is
#: raised to match) whose reply is 20 MB, far over the 1 MiB the reply cache keeps for reads.
SLOW = "sum(i % 7 for _ in range(k) for i in range(5_000_000))"
SLOW_BIG_READ = f"[str({SLOW})] + ['x' * 1_000_000] * 20"
SLOW_K = 3


@pytest.fixture
def verbose_server(tmp_path):
    with ServerProcess(tmp_path / "data", "-v", "--time-limit", "120") as running:
        yield running


def evaluations(server: ServerProcess, op: str) -> list[float]:
    """Seconds of each evaluation of an `op` request the server logged."""
    return [
        float(seconds)
        for seconds in re.findall(
            rf"request \d+ \({op}\) of session \w+ evaluated in ([0-9.]+) s", server.log()
        )
    ]


@pytest.mark.parametrize("client", ["sync", "asyncio"])
def test_a_slow_read_with_a_20_mb_reply_is_evaluated_once(verbose_server, client):
    started = time.monotonic()
    if client == "sync":
        with pyzdb.connect(verbose_server.uri, timeout=120) as db:
            value = db.query(SLOW_BIG_READ, k=SLOW_K)
    else:

        async def run() -> list[str]:
            async with pyzdb.net.aio.connect(verbose_server.uri, timeout=120) as db:
                return await db.query(SLOW_BIG_READ, k=SLOW_K)

        value = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert value[0] == str(sum(i % 7 for i in range(5_000_000)) * SLOW_K)
    assert value[1:] == ["x" * 1_000_000] * 20
    deadline = time.monotonic() + 10
    while not evaluations(verbose_server, "query") and time.monotonic() < deadline:
        time.sleep(0.05)  # the log line may trail the reply by a moment
    runs = evaluations(verbose_server, "query")
    assert len(runs) == 1, f"the slow read was evaluated {len(runs)} times: {runs}"
    print(f"{client}: evaluated once in {runs[0]:.2f} s; the call took {elapsed:.2f} s")


def test_a_slow_write_with_a_large_reply_is_evaluated_once(verbose_server):
    with pyzdb.connect(verbose_server.uri, timeout=120) as db:
        db["n"] = 0
        value = db.execute("db['n'] += 1\n" + SLOW_BIG_READ, k=SLOW_K)
        assert value[1:] == ["x" * 1_000_000] * 20
        assert db["n"].get() == 1
    assert len(evaluations(verbose_server, "execute")) == 2  # the `= 0` and the slow one


def test_a_server_killed_during_a_slow_request_is_noticed_and_the_request_resent(tmp_path):
    """The resend comes from the dropped connection: the restarted server answers it."""
    with ServerProcess(tmp_path / "data", "--time-limit", "120") as server:
        db = pyzdb.connect(server.uri, timeout=60)
        db["n"] = 0
        result: list[object] = []
        errors: list[BaseException] = []

        def slow_write() -> None:
            try:
                result.append(db.execute(f"db['n'] += 1\n{SLOW}\ndb['n']", k=8))
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=slow_write)
        writer.start()
        time.sleep(1.0)  # the write is being evaluated: its connection is up
        server.kill()
        server.restart()
        writer.join(90)
        assert not writer.is_alive()
        assert errors == []
        assert result == [1], "the killed evaluation was rolled back, the resent one committed"
        assert db["n"].get() == 1
        db.close()


def test_a_request_sent_while_the_server_is_down_is_delivered_when_it_comes_up(tmp_path):
    with ServerProcess(tmp_path / "data") as server:
        db = pyzdb.connect(server.uri, timeout=30)
        db["n"] = 0
        server.kill()
        result: list[object] = []
        writer = threading.Thread(target=lambda: result.append(db.execute("db['n'] += 1\ndb['n']")))
        writer.start()
        time.sleep(2.5)  # longer than the first checks of the connection
        server.restart()
        writer.join(30)
        assert result == [1]
        assert db["n"].get() == 1
        db.close()


def test_many_connections_closed_or_dropped_leave_the_process_able_to_connect(tmp_path):
    """Each client socket carries a monitor; one closed with its monitor on wedged libzmq in
    the whole process after a few hundred connections (nothing could connect any more)."""
    for round_ in range(160):
        with ServerProcess(tmp_path / f"data{round_}") as server:
            db = pyzdb.connect(server.uri, timeout=10)
            db["n"] = round_
            assert db["n"].get() == round_
            if round_ % 2:
                db.close()
            del db
    with ServerProcess(tmp_path / "last") as server:
        assert ping(server.uri, 5)
