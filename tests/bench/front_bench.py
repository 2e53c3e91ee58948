"""What `pyzdb-server --front` costs, and what it buys: the same server with and without it.

    python tests/bench/front_bench.py [--quick] [--rounds R]

Two real `pyzdb-server` processes (the console script) on ipc://, one plain and one with
`--front`, each holding the same 100,000 records `{'id', 'name', 'age'}`; one client per server,
rounds interleaved (their order alternating), medians:

(a) round trip of a small `db['x'].get()`: the hop through the front;
(b) a query returning 1% of the records (`r['id'] % 100 == 7`);
(c) `db['r'].get()`, all the records (~3.6 MB on the wire);
(d) what the front is for: a `ping` while another client's request runs a Python loop to its
    time budget (3 s), sent 0.3 s after it started (past `--busy-after`);
(e) the resident memory of each server's processes (supervisor, worker, and with the front
    its shadow: a second copy of the data), after loading the records.

Everything is written under temporary directories that are removed afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import _common
from _common import interleave, print_figures, ratio, us
from server_process import ServerProcess

import pyzdb
from pyzdb.cli.figures import median_seconds, seconds

RECORDS = "[{'id': i, 'name': 'user%d' % i, 'age': i % 90} for i in range(n)]"
ONE_PERCENT = "[r for r in db['r'] if r['id'] % 100 == 7]"
LOOP = "n = 0\nwhile True:\n    n += 1"
BUDGET = 3.0
HEAD_START = 0.3


def start(data: Path, *args: str) -> ServerProcess:
    return ServerProcess(data, "--time-limit", str(BUDGET), *args, tcp=False, script=True).start()


def wait_for_shadow(db: pyzdb.Connection) -> None:
    """The shadow starts after the worker: wait until it has every record."""
    deadline = time.monotonic() + 120
    while True:
        replication = db.info()["replication"]
        if any(r["applied_seq"] == replication["seq"] for r in replication["replicas"]):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the front's shadow did not catch up within 120 s")
        time.sleep(0.1)


def ping_while_busy(db: pyzdb.Connection, busy: pyzdb.Connection) -> float:
    """Seconds a ping takes while `busy` runs a request to its time budget."""

    def run() -> None:
        try:
            busy.execute(LOOP)
        except pyzdb.LimitExceeded:
            pass

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(HEAD_START)
    took = seconds(db.ping)
    thread.join()
    return took


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    children = [int(line) for line in found.stdout.split()]
    return _common.rss_bytes(pid) + sum(tree_rss(child) for child in children)


def main() -> int:
    args = _common.parser(__doc__.split("\n\n")[0]).parse_args()
    rounds = _common.rounds_of(args)
    size = 1_000 if args.quick else 100_000
    count = 50 if args.quick else 2_000
    with _common.scratch_dir() as root:
        plain = start(root / "plain")
        front = start(root / "front", "--front")
        dbs = {
            "plain": pyzdb.connect(plain.uri, timeout=60),
            "front": pyzdb.connect(front.uri, timeout=60),
        }
        busy = {
            name: pyzdb.connect(s.uri, timeout=60)
            for name, s in (("plain", plain), ("front", front))
        }
        try:
            for db in dbs.values():
                db["x"] = 1
                db.execute(f"db['r'] = {RECORDS}", n=size)
            wait_for_shadow(dbs["front"])
            measures = {}
            for name, db in dbs.items():
                measures[f"small-{name}"] = lambda db=db: median_seconds(
                    lambda: db["x"].get(), count
                )
                measures[f"query-{name}"] = lambda db=db: median_seconds(
                    lambda: db.query(ONE_PERCENT), 3 if args.quick else 20
                )
                measures[f"all-{name}"] = lambda db=db: median_seconds(
                    lambda: db["r"].get(), 2 if args.quick else 10
                )
                measures[f"busy-{name}"] = lambda name=name: ping_while_busy(dbs[name], busy[name])
            for name, measure in measures.items():
                if not name.startswith("busy"):
                    measure()  # warm up connections and caches outside the rounds
            t = interleave(rounds, **measures)
            memory = {"plain": tree_rss(plain.pid), "front": tree_rss(front.pid)}
        finally:
            for db in [*dbs.values(), *busy.values()]:
                db.close()
            plain.close()
            front.close()
    rows = []
    for key, figure in (
        ("small", "(a) db['x'].get() round trip, ipc"),
        ("query", f"(b) query returning 1% of {size:,} records"),
        ("all", f"(c) db['r'].get(), {size:,} records"),
        ("busy", f"(d) ping while another request runs {BUDGET:g} s"),
    ):
        front_value, plain_value = t[f"{key}-front"], t[f"{key}-plain"]
        change = (
            f"{plain_value / front_value:,.0f}x faster"
            if key == "busy"
            else ratio(front_value, plain_value)
        )
        rows.append([figure, us(front_value), f"plain {us(plain_value)}", change, "-", "-"])
    mib = 1024 * 1024
    rows.append(
        [
            f"(e) RSS of the server's processes, {size:,} records",
            f"{memory['front'] / mib:.0f} MiB",
            f"plain {memory['plain'] / mib:.0f} MiB",
            ratio(memory["front"], memory["plain"]),
            "-",
            "-",
        ]
    )
    print_figures(
        f"front_bench: pyzdb-server --front vs plain, {_common.machine()}, "
        f"median of {rounds} interleaved rounds",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
