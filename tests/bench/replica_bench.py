"""Issue 13's benchmarks: replicas following a primary, on a records workload.

    python tests/bench/replica_bench.py [--quick] [--rounds R]

The workload is a collection of small dicts (`db['r'][i] = {'id': i, 'name': ..., 'v': i}`,
100,000 of them; 1,000,000 for (c)); every server is a real `pyzdb-server` process. Each
figure is a ratio against a baseline measured in the same run (see `_common.py`):

(a) Replica lag under a YCSB-style update load (2 writer processes updating random records,
    each update durable): p50/p99 of the lag in records (primary seq - replica seq, sampled)
    and in ms (from the primary's reply to a write until the replica has applied it), against
    the writers' own p50 write round trip.
(b) Read throughput (`db['r'][k]['v']`, 4 client processes, eventual consistency) through
    `read_uris` with 1, 2 and 4 replicas vs the primary alone. On a 2-core machine every
    replica is one more process on the same two cores: this shows the cost, not a gain.
(c) Time for a new replica to sync a 1,000,000-record database from scratch (snapshot
    transfer + load) vs the primary's own recovery time (restart from its checkpoint).
"""

from __future__ import annotations

import multiprocessing
import random
import sys
import threading
import time
from pathlib import Path

import _common
from _common import ms, print_figures, rate
from server_process import ServerProcess

import pyzdb
from pyzdb.cli.figures import median, percentile, seconds

FILL = "for i in range(a, b): db['r'][i] = {'id': i, 'name': 'user%d' % i, 'v': i}"


def start(data: Path, *args: str) -> ServerProcess:
    return ServerProcess(data, *args, script=True).start(timeout=120)


def load(uri: str, count: int) -> None:
    with pyzdb.connect(uri, timeout=120) as db:
        db["r"] = {}
        step = 100_000
        for low in range(0, count, step):
            db.execute(FILL, a=low, b=min(low + step, count))


def wait_applied(uri: str, seq: int, timeout: float = 600.0) -> None:
    with pyzdb.connect(uri, timeout=30) as db:
        deadline = time.monotonic() + timeout
        while db.info()["replication"]["applied_seq"] < seq:
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {uri} did not reach seq {seq}")
            time.sleep(0.005)


# -- (a) lag ---------------------------------------------------------------------------------------


def _writer(uri: str, count: int, seconds: float, out: multiprocessing.Queue) -> None:
    rng = random.Random()
    acks = []
    with pyzdb.connect(uri, timeout=30) as db:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            key = rng.randrange(count)
            before = time.time()
            db.execute("db['r'][k]['v'] = v", k=key, v=rng.random())
            after = time.time()
            acks.append((db.last_seq, after, after - before))
    out.put(acks)


def bench_lag(root: Path, count: int, seconds: float) -> list[list[str]]:
    primary = start(root / "lag-p")
    replica = None
    try:
        load(primary.uri, count)
        replica = start(root / "lag-r", "--replica-of", primary.uri)
        with pyzdb.connect(primary.uri) as db:
            wait_applied(replica.uri, db.info()["server"]["seq"])
        seen: dict[int, float] = {}
        lag_records: list[int] = []
        done = threading.Event()

        def watch() -> None:
            with pyzdb.connect(replica.uri) as rdb, pyzdb.connect(primary.uri) as pdb:
                while not done.is_set():
                    head = pdb.info()["server"]["seq"]
                    applied = rdb.info()["replication"]["applied_seq"]
                    now = time.time()
                    lag_records.append(max(0, head - applied))
                    for seq in range(max(seen, default=0) + 1, applied + 1):
                        seen[seq] = now

        context = multiprocessing.get_context("spawn")
        out = context.Queue()
        writers = [
            context.Process(target=_writer, args=(primary.uri, count, seconds, out))
            for _ in range(2)
        ]
        sampler = threading.Thread(target=watch)
        sampler.start()
        for process in writers:
            process.start()
        acks = [ack for _ in writers for ack in out.get()]
        for process in writers:
            process.join()
        wait_applied(replica.uri, max(seq for seq, _, _ in acks))
        time.sleep(0.05)
        done.set()
        sampler.join()
        lag_ms = sorted(max(0.0, seen[seq] - acked) for seq, acked, _ in acks if seq in seen)
        write_rtt = median([rtt for _, _, rtt in acks])
    finally:
        if replica is not None:
            replica.close()
        primary.close()
    lag_records.sort()
    p50, p99 = percentile(lag_ms, 50), percentile(lag_ms, 99)
    r50, r99 = percentile(lag_records, 50), percentile(lag_records, 99)
    return [
        [
            "(a) replica lag p50 (ms)",
            ms(p50),
            f"write rtt p50 {ms(write_rtt)}",
            f"{p50 / write_rtt:.2f}x",
            "report",
            "-",
        ],
        [
            "(a) replica lag p99 (ms)",
            ms(p99),
            f"write rtt p50 {ms(write_rtt)}",
            f"{p99 / write_rtt:.2f}x",
            "report",
            "-",
        ],
        [
            "(a) replica lag p50/p99 (records)",
            f"{r50:.0f}/{r99:.0f}",
            f"{rate(len(acks) / seconds, ' writes/s')}",
            f"{r99 / max(r50, 1):.2f}x",
            "report",
            "-",
        ],
    ]


# -- (b) read throughput -----------------------------------------------------------------------


def _reader(
    primary: str,
    replicas: list[str],
    count: int,
    seconds: float,
    start_at: float,
    out: multiprocessing.Queue,
) -> None:
    rng = random.Random()
    done = 0
    with pyzdb.connect(primary, read_uris=replicas, consistency="eventual", timeout=30) as db:
        db.query("1")
        time.sleep(max(0.0, start_at - time.time()))
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            db.query("db['r'][k]['v']", k=rng.randrange(count))
            done += 1
    out.put(done)


def read_rate(primary: str, replicas: list[str], count: int, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start_at = time.time() + 2.0
    readers = [
        context.Process(target=_reader, args=(primary, replicas, count, seconds, start_at, out))
        for _ in range(4)
    ]
    for process in readers:
        process.start()
    total = sum(out.get() for _ in readers)
    for process in readers:
        process.join()
    return total / seconds


def bench_reads(root: Path, count: int, seconds: float, rounds: int) -> list[list[str]]:
    primary = start(root / "reads-p")
    replicas: list[ServerProcess] = []
    try:
        load(primary.uri, count)
        with pyzdb.connect(primary.uri) as db:
            head = db.info()["server"]["seq"]
        for index in range(4):
            replicas.append(start(root / f"reads-r{index}", "--replica-of", primary.uri))
            wait_applied(replicas[-1].uri, head)
        uris = [replica.uri for replica in replicas]
        results = _common.interleave(
            rounds,
            alone=lambda: read_rate(primary.uri, [], count, seconds),
            one=lambda: read_rate(primary.uri, uris[:1], count, seconds),
            two=lambda: read_rate(primary.uri, uris[:2], count, seconds),
            four=lambda: read_rate(primary.uri, uris, count, seconds),
        )
    finally:
        for replica in replicas:
            replica.close()
        primary.close()
    alone = results["alone"]
    return [
        [
            f"(b) reads, {name} replica(s)",
            rate(results[key]),
            f"primary {rate(alone)}",
            f"{results[key] / alone:.2f}x",
            "report",
            "-",
        ]
        for name, key in (("1", "one"), ("2", "two"), ("4", "four"))
    ]


# -- (c) sync from scratch -------------------------------------------------------------------------


def bench_sync(root: Path, count: int) -> list[list[str]]:
    primary = start(root / "sync-p")
    replica = None
    try:
        load(primary.uri, count)
        with pyzdb.connect(primary.uri, timeout=300) as db:
            db.checkpoint()
            head = db.info()["server"]["seq"]
        primary.stop()
        recovery = seconds(primary.restart)
        started = time.perf_counter()
        replica = start(root / "sync-r", "--replica-of", primary.uri)
        wait_applied(replica.uri, head)
        sync = time.perf_counter() - started
    finally:
        if replica is not None:
            replica.close()
        primary.close()
    return [
        [
            f"(c) new replica syncs {count:,} records",
            f"{sync:.2f} s",
            f"primary recovery {recovery:.2f} s",
            f"{sync / recovery:.2f}x",
            "report",
            "-",
        ]
    ]


def main() -> int:
    args = _common.parser(__doc__.split("\n\n")[0]).parse_args()
    rounds = _common.rounds_of(args)
    records = 2_000 if args.quick else 100_000
    seconds = 0.5 if args.quick else 3.0
    with _common.scratch_dir() as root:
        rows = bench_lag(root, records, seconds * 2)
        rows += bench_reads(root, records, seconds, rounds)
        rows += bench_sync(root, 5_000 if args.quick else 1_000_000)
    print_figures(
        f"replica_bench: replicas of pyzdb-server, {_common.machine()}, "
        f"median of {rounds} interleaved rounds",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
