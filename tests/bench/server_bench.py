"""Issue 3's benchmarks: `pyzdb-server` + `pyzdb.connect` against bare baselines.

    python tests/bench/server_bench.py [--quick] [--rounds R]

Figures, each next to a baseline measured in the same run (see `_common.py` for the method);
the servers are real `pyzdb-server` processes (the console script) on 127.0.0.1 or ipc://:

(a) Median round trip of `db['x'].get()` vs a bare pyzmq REQ/REP echo of 50 bytes between two
    Python processes on the same transport (tcp 127.0.0.1, then ipc://). Target <= 1.6x on
    tcp. A DEALER/ROUTER echo (the pattern pyzdb uses) is shown too.
(b) `[v*v for v in db['l'] if v % 2]` over 1,000,000 ints: one `db.query` vs fetching the list
    (`db['l'].get()`) and computing on the client, as the original pyzdb did. Target >= 5x
    faster. The same with a small result (`sum(...)`) shows what the result's size costs.
(c) Durable (`--fsync always`) `db.execute("db['c'] += 1")` throughput with 8 concurrent
    client processes vs 1 (group commit), target >= 4x; both also against the bare
    append-100-bytes-and-fsync loop on the disk of the server's data directory.
(d) Server RSS after loading 1,000,000 dicts `{'id': i, 'name': 'user%d' % i, 'age': i % 90}`
    (built by one `execute`, checkpointed, then the server restarted: loaded from disk) vs the
    same list of dicts in a plain Python process. Target <= 1.5x.

Everything is written under temporary directories that are removed afterwards.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import _common
from _common import interleave, print_figures, rate, ratio, us
from server_process import ServerProcess, free_tcp_uri

import pyzdb
from pyzdb.cli.benchpool import ClientPool
from pyzdb.cli.figures import median_seconds, seconds

COMPREHENSION = "[v*v for v in db['l'] if v % 2]"
SUM = "sum(v*v for v in db['l'] if v % 2)"
USERS = "[{'id': i, 'name': 'user%d' % i, 'age': i % 90} for i in range(n)]"
MESSAGE = b"m" * 50

#: A bare echo server: the floor of a ZeroMQ round trip between two Python processes.
ECHO_SERVER = """
import sys, zmq
sock = zmq.Context().socket(getattr(zmq, sys.argv[2]))
sock.bind(sys.argv[1])
print("ready", flush=True)
if sys.argv[2] == "REP":
    while True:
        sock.send(sock.recv())
else:
    while True:
        sock.send_multipart(sock.recv_multipart())
"""

#: A plain Python process holding the users, for (d): prints its RSS before and after.
PLAIN_USERS = """
import gc, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
gc.collect()
before = rss()
users = eval(sys.argv[1], {"n": int(sys.argv[2])})
gc.collect()
print(before, rss(), len(users))
"""


def start_server(data: Path, *args: str, tcp: bool = True) -> ServerProcess:
    return ServerProcess(data, *args, tcp=tcp, script=True).start()


# -- (a) round trips -----------------------------------------------------------------------------


class Echo:
    """A bare ZeroMQ echo server process and a client socket of the matching pattern."""

    def __init__(self, uri: str, pattern: str) -> None:
        import zmq

        self.process = subprocess.Popen(
            [sys.executable, "-c", ECHO_SERVER, uri, pattern], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {pattern} echo server did not start on {uri}")
        client = "REQ" if pattern == "REP" else "DEALER"
        self.socket = zmq.Context.instance().socket(getattr(zmq, client))
        self.socket.connect(uri)
        self.dealer = client == "DEALER"

    def round_trip(self) -> None:
        if self.dealer:
            self.socket.send_multipart([b"", MESSAGE])
            self.socket.recv_multipart()
        else:
            self.socket.send(MESSAGE)
            self.socket.recv()

    def close(self) -> None:
        self.socket.close(linger=0)
        self.process.kill()
        self.process.wait()


def bench_round_trips(root: Path, count: int, rounds: int) -> list[list[str]]:
    ipc = f"ipc://{root}/"
    servers = [start_server(root / "rtt-tcp"), start_server(root / "rtt-ipc", tcp=False)]
    echoes = {
        "rep-tcp": Echo(free_tcp_uri(), "REP"),
        "rep-ipc": Echo(ipc + "echo-rep", "REP"),
        "router-tcp": Echo(free_tcp_uri(), "ROUTER"),
    }
    clients = [pyzdb.connect(server.uri) for server in servers]
    try:
        measures = {}
        for name, db in zip(("pyzdb-tcp", "pyzdb-ipc"), clients, strict=True):
            db["x"] = 1
            measures[name] = lambda db=db: median_seconds(lambda: db["x"].get(), count)
        for name, echo in echoes.items():
            measures[name] = lambda echo=echo: median_seconds(echo.round_trip, count)
        embedded = pyzdb.open(root / "rtt-embedded", fsync="no")
        embedded["x"] = 1
        measures["embedded"] = lambda: median_seconds(lambda: embedded["x"].get(), count)
        for measure in measures.values():
            measure()  # warm up connections and caches outside the rounds
        t = interleave(rounds, **measures)
        embedded.close()
    finally:
        for db in clients:
            db.close()
        for echo in echoes.values():
            echo.close()
        for server in servers:
            server.close()
    return [
        [
            "(a) db['x'].get() round trip, tcp",
            us(t["pyzdb-tcp"]),
            f"REQ/REP echo {us(t['rep-tcp'])}",
            ratio(t["pyzdb-tcp"], t["rep-tcp"]),
            "<= 1.6x",
            _common.met(t["pyzdb-tcp"] <= 1.6 * t["rep-tcp"]),
        ],
        [
            "(a) same vs DEALER/ROUTER echo, tcp",
            us(t["pyzdb-tcp"]),
            f"DEALER/ROUTER echo {us(t['router-tcp'])}",
            ratio(t["pyzdb-tcp"], t["router-tcp"]),
            "-",
            "-",
        ],
        [
            "(a) same, embedded (engine only, no wire)",
            us(t["embedded"]),
            f"REQ/REP echo tcp {us(t['rep-tcp'])}",
            ratio(t["embedded"], t["rep-tcp"]),
            "-",
            "-",
        ],
        [
            "(a) db['x'].get() round trip, ipc",
            us(t["pyzdb-ipc"]),
            f"REQ/REP echo {us(t['rep-ipc'])}",
            ratio(t["pyzdb-ipc"], t["rep-ipc"]),
            "-",
            "-",
        ],
    ]


# -- (b) query next to the data vs fetch and compute -----------------------------------------------


def fetch_then(db: pyzdb.Connection, compute: object) -> None:
    values = db["l"].get()
    compute(values)  # type: ignore[operator]


def bench_comprehension(root: Path, size: int, rounds: int) -> list[list[str]]:
    server = start_server(root / "comprehension", "--time-limit", "120")
    db = pyzdb.connect(server.uri, timeout=120)
    try:
        db.execute("db['l'] = list(range(n))", n=size)
        local = lambda values: [v * v for v in values if v % 2]
        local_sum = lambda values: sum(v * v for v in values if v % 2)
        if db.query(COMPREHENSION) != local(list(range(size))):
            raise AssertionError("the server and the client disagree")
        t = interleave(
            rounds,
            query=lambda: seconds(lambda: db.query(COMPREHENSION)),
            fetch=lambda: seconds(lambda: fetch_then(db, local)),
            query_sum=lambda: seconds(lambda: db.query(SUM)),
            fetch_sum=lambda: seconds(lambda: fetch_then(db, local_sum)),
            get=lambda: seconds(lambda: db["l"].get()),
        )
    finally:
        db.close()
        server.close()
    return [
        [
            f"(b) db.query comprehension, {size:,} ints",
            _common.ms(t["query"]),
            f"fetch+compute {_common.ms(t['fetch'])}",
            f"{t['fetch'] / t['query']:.2f}x faster",
            ">= 5x faster",
            _common.met(t["fetch"] >= 5 * t["query"]),
        ],
        [
            "(b) db.query sum(...) (small result)",
            _common.ms(t["query_sum"]),
            f"fetch+sum {_common.ms(t['fetch_sum'])}",
            f"{t['fetch_sum'] / t['query_sum']:.2f}x faster",
            "-",
            "-",
        ],
        [
            "(b) db['l'].get() alone (the fetch)",
            _common.ms(t["get"]),
            f"fetch+compute {_common.ms(t['fetch'])}",
            ratio(t["get"], t["fetch"]),
            "-",
            "-",
        ],
    ]


# -- (c) group commit ----------------------------------------------------------------------------


def bench_group_commit(root: Path, requests: int, rounds: int) -> list[list[str]]:
    data = root / "group"
    server = start_server(data, "--fsync", "always")
    floor_file = data / "floor.log"  # the server's data directory: the same disk
    try:
        db = pyzdb.connect(server.uri)
        db["c"] = 0
        db.close()
        with ClientPool(server.uri, 1) as one, ClientPool(server.uri, 8) as eight:
            one.run("incr", 20)
            eight.run("incr", 80)
            r = interleave(
                rounds,
                one=lambda: one.run("incr", requests).throughput,
                eight=lambda: eight.run("incr", 2 * requests).throughput,
                floor=lambda: _common.fsync_floor(floor_file, requests),
            )
    finally:
        server.close()
    return [
        [
            "(c) += 1 durable, 8 clients vs 1",
            rate(r["eight"]),
            f"1 client {rate(r['one'])}",
            ratio(r["eight"], r["one"]),
            ">= 4x",
            _common.met(r["eight"] >= 4 * r["one"]),
        ],
        [
            "(c) += 1 durable, 1 client",
            rate(r["one"]),
            f"append+fsync {rate(r['floor'])}",
            ratio(r["one"], r["floor"]),
            "-",
            "-",
        ],
        [
            "(c) += 1 durable, 8 clients",
            rate(r["eight"]),
            f"append+fsync {rate(r['floor'])}",
            ratio(r["eight"], r["floor"]),
            "-",
            "-",
        ],
    ]


# -- (d) server memory -----------------------------------------------------------------------------


def bench_memory(root: Path, count: int) -> list[list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_USERS, USERS, str(count)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    plain_before, plain_after, held = (int(word) for word in out.split())
    if held != count:
        raise AssertionError(f"the plain process held {held} users, not {count}")
    server = start_server(root / "memory", "--time-limit", "600")
    try:
        empty = _common.rss_bytes(server.worker_pid)
        db = pyzdb.connect(server.uri, timeout=600)
        db.execute(f"db['u'] = {USERS}", n=count)
        db.checkpoint()
        db.close()
        built = _common.rss_bytes(server.worker_pid)
        server.stop()
        server.restart()
        db = pyzdb.connect(server.uri, timeout=600)
        if db.query("len(db['u'])") != count:
            raise AssertionError("the restarted server lost users")
        db.close()
        loaded = _common.rss_bytes(server.worker_pid)
    finally:
        server.close()
    rows = [
        [
            f"(d) server RSS, {count:,} dicts loaded",
            _mib(loaded),
            f"plain {_mib(plain_after)}",
            ratio(loaded, plain_after),
            "<= 1.5x",
            _common.met(loaded <= 1.5 * plain_after),
        ],
        [
            "(d) same, growth over the empty server",
            _mib(loaded - empty),
            f"plain growth {_mib(plain_after - plain_before)}",
            ratio(loaded - empty, plain_after - plain_before),
            "-",
            "-",
        ],
        [
            "(d) server RSS after building (no restart)",
            _mib(built),
            f"plain {_mib(plain_after)}",
            ratio(built, plain_after),
            "-",
            "-",
        ],
    ]
    return rows


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def main() -> int:
    args = _common.parser(__doc__.split("\n\n")[0]).parse_args()
    rounds = _common.rounds_of(args)
    big = 10_000 if args.quick else 1_000_000
    with _common.scratch_dir() as root:
        rows = bench_round_trips(root, 50 if args.quick else 2_000, rounds)
        rows += bench_comprehension(root, big, rounds)
        rows += bench_group_commit(root, 40 if args.quick else 2_000, rounds)
        rows += bench_memory(root, big)
    print_figures(
        f"server_bench: pyzdb-server and pyzdb.connect, {_common.machine()}, "
        f"median of {rounds} interleaved rounds",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
