"""`pyzdb-server --front` (issue 9): the server keeps answering `ping` and other clients' reads
while one request is being stopped.

One real server for the module, with the front on. While client A's request runs (a Python
loop stopped by its budget inside the worker, then a C call that only the supervisor's kill
ends), client B's ping and read are answered long before A gets its reply, and the read sees
B's write acknowledged just before A started. Writes sent during the stall wait for the new
worker and run once. Without the front nothing of this runs: the rest of the suite is that
test (the default server is unchanged).
"""

from __future__ import annotations

import ast
import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from server_process import ServerProcess

import pyzdb
import pyzdb.aio
from pyzdb.server.options import build_parser, config_from_args

BUDGET = 3.0
ARGS = ("--front", "--time-limit", str(BUDGET), "--kill-grace", "0.5", "--busy-after", "0.1")
#: Runs until its time budget stops it, inside the worker (a Python loop: no kill).
LOOP = "n = 0\nwhile True:\n    n += 1"
#: Seconds A's request has run before B asks: past --busy-after and one look at the page, with
#: room for a loaded machine to be slow getting A's request to the worker.
HEAD_START = 1.0
ROUND2 = Path(__file__).resolve().parent.parent / "sandbox" / "round2"


def stall_case() -> dict[str, str]:
    """A C call of the round-two corpus that no price stops: the supervisor must kill it."""
    tree = ast.parse((ROUND2 / "budget.py").read_text(encoding="utf-8"))
    cases = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CASES"
    )
    killed = [case for case in cases if case["stops"] != "priced"]
    assert killed, "every budget case is priced now: this test needs another C stall"
    return killed[0]


def worker_pids(server: ServerProcess) -> list[int]:
    """The main server's workers (the shadow's supervisor logs its own, tagged)."""
    pattern = r"^(?!.*\[shadow\]).*worker pid (\d+) serves"
    return [int(pid) for pid in re.findall(pattern, server.log(), re.M)]


def shadow_caught_up(database: pyzdb.Database) -> bool:
    replication = database.info()["replication"]
    return any(r["applied_seq"] == replication["seq"] for r in replication["replicas"])


def wait_for_shadow(server: ServerProcess, database: pyzdb.Database) -> None:
    """Until the shadow has applied every write: a read sent to a shadow that is one fetch
    behind waits for the worker (right, and what this module does not measure)."""
    deadline = time.monotonic() + 30.0
    while not shadow_caught_up(database):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.02)


@pytest.fixture(scope="module")
def front(tmp_path_factory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("front") / "data", *ARGS) as server:
        with pyzdb.connect(server.uri, timeout=30.0) as database:
            database["seed"] = 1
            wait_for_shadow(server, database)  # the shadow starts after the worker
        yield server


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `call` in a thread; the dict gets its outcome and the moment it came."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # inspected by the test
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    value = call()
    return value, time.monotonic()


def test_ping_and_reads_are_answered_while_a_request_runs_to_its_budget(front):
    with (
        pyzdb.connect(front.uri, timeout=30.0) as a,
        pyzdb.connect(front.uri, timeout=30.0) as b,
    ):
        b["mine"] = "acknowledged before A started"
        wait_for_shadow(front, b)
        thread, outcome = in_thread(lambda: a.execute(LOOP))
        time.sleep(HEAD_START)
        _, pinged = timed(b.ping)
        value, read = timed(lambda: b["mine"].get())
        thread.join(30)
        assert isinstance(outcome.get("error"), pyzdb.LimitExceeded), outcome
        assert value == "acknowledged before A started"
        # Without the front both would wait for A's reply, which leaves at its budget.
        assert pinged < outcome["at"] - 0.5 and read < outcome["at"] - 0.5, (
            outcome["at"] - pinged,
            outcome["at"] - read,
        )
        assert len(worker_pids(front)) == 1, front.log()


def test_a_c_call_killed_past_its_budget_does_not_hold_up_pings_reads_or_writes(front):
    case = stall_case()
    workers = len(worker_pids(front))

    async def write() -> Any:
        async with pyzdb.aio.connect(front.uri, timeout=30.0) as writer:
            return await writer.execute("db['writes'] = db.get('writes', 0) + 1")

    with (
        pyzdb.connect(front.uri, timeout=30.0) as a,
        pyzdb.connect(front.uri, timeout=30.0) as b,
    ):
        b["before"] = case["name"]
        wait_for_shadow(front, b)
        stuck, stalled = in_thread(lambda: a.execute(case["source"]))
        time.sleep(HEAD_START)
        writing, written = in_thread(lambda: asyncio.run(write()))
        _, pinged = timed(b.ping)
        value, read = timed(lambda: b["before"].get())
        stuck.join(30)
        writing.join(30)
        # A (a sync client) resent over the new connection and got the quarantine's error.
        assert isinstance(stalled.get("error"), pyzdb.Error), stalled
        assert "quarantined" in str(stalled["error"])
        assert value == case["name"]
        assert pinged < stalled["at"] - 0.5 and read < stalled["at"] - 0.5
        # The asyncio writer's request died with the worker; it resent it, and it ran once.
        assert "error" not in written, written
        assert written["at"] > stalled["at"] - 0.5
        assert b["writes"].get() == 1
    assert len(worker_pids(front)) == workers + 1, front.log()


def test_clients_see_the_public_endpoint_and_info_says_the_front_is_on(front):
    with pyzdb.connect(front.uri, timeout=30.0) as database:
        server = database.info()["server"]
    assert server["front"] is True
    assert server["bind"] == front.uri
    assert (front.data_dir / "ENDPOINT").read_text().strip() == front.uri


@pytest.mark.parametrize("other", ["--no-supervisor", "--keys", "--replica-of"])
def test_front_refuses_what_it_cannot_carry_to_the_worker(tmp_path, other):
    value = {"--keys": [str(tmp_path)], "--replica-of": ["tcp://127.0.0.1:1"]}.get(other, [])
    args = build_parser().parse_args(["--data", str(tmp_path), "--front", other, *value])
    with pytest.raises(ValueError, match=f"--front cannot be combined with {other}: "):
        config_from_args(args)
