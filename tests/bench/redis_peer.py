"""A peer benchmark, not a test: one YCSB client against pyzdb and against Redis, side by side.

    python tests/bench/redis_peer.py [--quick] [--rounds R] [--records N] [--fields N] [-n OPS]

Needs a local `redis-server` binary and redis-py (`pip install redis`; not a pyzdb dependency),
and says so and exits 0 without them. Both servers start in temporary directories and fsync
every write: pyzdb with `--fsync always` (its default), Redis with `appendonly yes` and
`appendfsync always`. One client process runs the same operations against both through
`pyzdb.cli.ycsb.operation`: for Redis, an adapter maps them onto hashes the way YCSB's Redis binding
does (a record is a hash `user<k>`; read HGETALL, update HSET of one field, insert HSET of all
fields, scan a pipeline of HGETALL, read-modify-write HGETALL then HSET). Rounds alternate, and
each figure is pyzdb's operations/s over Redis's in the same round (median of the rounds).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import _common
from _common import interleave, print_figures, rate, scratch_dir
from server_process import ServerProcess, free_tcp_uri

import pyzdb
from pyzdb.cli import ycsb
from pyzdb.cli.figures import per_second


class _RedisRow:
    def __init__(self, client, key: int) -> None:
        self.client, self.key = client, f"user{key}"

    def get(self) -> dict:
        return self.client.hgetall(self.key)

    def __getitem__(self, field: str) -> None:
        raise NotImplementedError

    def __setitem__(self, field: str, value: str) -> None:
        self.client.hset(self.key, field, value)


class _RedisTable:
    def __init__(self, client, records: int) -> None:
        self.client, self.count = client, records

    def __getitem__(self, key: int) -> _RedisRow:
        return _RedisRow(self.client, key)

    def append(self, record: dict) -> None:
        self.client.hset(f"user{self.count}", mapping=record)
        self.count += 1


class RedisAsDb:
    """Just the part of pyzdb's interface that `ycsb.operation` uses, on Redis hashes."""

    def __init__(self, client, records: int) -> None:
        self.client = client
        self.table = _RedisTable(client, records)

    def __getitem__(self, name: str) -> _RedisTable:
        return self.table

    def query(self, source: str, s: int, n: int) -> list[dict]:
        pipe = self.client.pipeline(transaction=False)
        for key in range(s, s + n):
            pipe.hgetall(f"user{key}")
        return pipe.execute()


def start_redis(directory: Path) -> tuple[subprocess.Popen, int]:
    port = int(free_tcp_uri().rsplit(":", 1)[1])
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, port


def run_ops(db, workload: str, records: int, fields: int, ops: int) -> float:
    """Operations/s of one client running `ops` operations of `workload`."""
    ycsb.configure({"workload": workload, "records": records, "fields": fields})
    for _ in range(min(50, ops)):
        ycsb.operation(db)
    return per_second(ycsb.operation, ops, db)


def main() -> int:
    parser = _common.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--fields", type=int, default=10)
    parser.add_argument("-n", "--ops", type=int, default=None)
    parser.add_argument("--workloads", default="a,b,c,e,f")
    args = parser.parse_args()
    try:
        import redis
    except ImportError:
        print("redis_peer: redis-py is not installed (pip install redis): nothing measured")
        return 0
    if shutil.which("redis-server") is None:
        print("redis_peer: no redis-server on PATH: nothing measured")
        return 0
    records = args.records or (1000 if args.quick else 100_000)
    ops = args.ops or (200 if args.quick else 5000)
    rounds = _common.rounds_of(args)
    rows = []
    with scratch_dir() as root:
        (root / "redis").mkdir()
        process, port = start_redis(root / "redis")
        try:
            client = redis.Redis(port=port, decode_responses=True)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            peer = RedisAsDb(client, records)
            pipe = client.pipeline(transaction=False)
            for key in range(records):
                pipe.hset(
                    f"user{key}",
                    mapping={f"field{f}": f"{key}.{f}:" * 20 for f in range(args.fields)},
                )
                if key % 1000 == 999:
                    pipe.execute()
            pipe.execute()
            with ServerProcess(root / "pyzdb", "--fsync", "always", tcp=True) as server:
                db = pyzdb.connect(server.uri, timeout=120)
                ycsb.load(db, records, args.fields)
                for name in args.workloads.split(","):
                    got = interleave(
                        rounds,
                        pyzdb=lambda name=name: run_ops(db, name, records, args.fields, ops),
                        redis=lambda name=name: run_ops(peer, name, records, args.fields, ops),
                    )
                    mine, theirs = got["pyzdb"], got["redis"]
                    rows.append(
                        [
                            f"(ycsb-{name}) one client, {records:,} records of "
                            f"{args.fields} fields",
                            rate(mine),
                            f"redis {rate(theirs)}",
                            f"{mine / theirs:.2f}x",
                            ">= 1x",
                            _common.met(mine >= theirs),
                        ]
                    )
                db.close()
        finally:
            process.terminate()
            process.wait(10)
    print_figures(
        f"redis_peer: pyzdb vs Redis (appendfsync always), {_common.machine()}, "
        f"median of {rounds} interleaved rounds",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
