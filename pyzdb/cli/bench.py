"""`pyzdb-bench`: latency and throughput of a running `pyzdb-server`, like `redis-benchmark`.

Theory of operation
-------------------
The clients are separate *processes* (multiprocessing, `spawn`): client threads of one
interpreter would take turns at its GIL and measure that instead of the server. Each client
process connects once and then serves the parent over a pipe, one test at a time:

1. warm up (connect, fill the server's compile cache, page in the code) outside the clock;
2. wait at a barrier shared by all clients, so they start together;
3. time each of its share of the requests (`perf_counter`), plus its first start and last end.

Latency percentiles come from every request of every client (nearest rank). Throughput is
all requests over the span from the first client's start to the last client's end;
`time.monotonic` is `CLOCK_MONOTONIC` on Linux, one clock for all processes of the machine.

The tests write the keys `x` (get, set), `c` (incr) and `l` (comprehension) of the server's
root, and `--workload a..f` (the YCSB core workloads, `pyzdb.cli.ycsb`) writes `ycsb`. The keys it
wrote are listed under the root key `pyzdb-bench`, and it refuses to run against a server that
holds any other key unless given `--force`: a server with data someone cares about is left
alone. While a test runs, a progress line on stderr counts its requests. The table helpers are
shared with the scripts in `tests/bench/`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from pyzdb.cli import ycsb
from pyzdb.limits import DEFAULT_URI
from pyzdb.version import version_line

COMPREHENSION = "[v*v for v in db['l'] if v % 2]"


def _get(db: Any) -> None:
    db["x"].get()


def _set(db: Any) -> None:
    db["x"] = 1


def _incr(db: Any) -> None:
    db.execute("db['c'] += 1")


def _comprehension(db: Any) -> None:
    db.query(COMPREHENSION)


#: The requests of each test, as DESIGN.md spells them (module level: a spawned client looks
#: them up by name).
TESTS: dict[str, Callable[[Any], None]] = {
    "get": _get,
    "set": _set,
    "incr": _incr,
    "comprehension": _comprehension,
}
#: Every operation a client process can run: the tests and the YCSB workloads.
_OPS: dict[str, Callable[[Any], None]] = {
    **TESTS,
    **{f"ycsb-{name}": ycsb.operation for name in ycsb.MIXES},
}
#: The root key that lists the keys pyzdb-bench wrote (see `claim`).
MARKER = "pyzdb-bench"
#: Requests between two updates of the shared progress counter.
_PROGRESS_EVERY = 64


# -- statistics and tables (shared with tests/bench/) ----------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats
    return ordered[min(len(ordered), int(rank)) - 1]


def median(values: Sequence[float]) -> float:
    """The median, the statistic every figure uses: one slow outlier on a noisy box moves
    a mean, not a median."""
    return statistics.median(values)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned.

    Columns are separated by at least two spaces and no cell holds two consecutive spaces,
    so a reader (or the smoke test) can split a row back into its cells with `split_row`.
    """
    cells = [[_cell(value) for value in row] for row in rows]
    for row in cells:
        if len(row) != len(headers):
            raise ValueError(f"row {row} has {len(row)} cells for {len(headers)} headers")
    widths = [
        max([len(header)] + [len(row[i]) for row in cells]) for i, header in enumerate(headers)
    ]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [value.rjust(width) for value, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    out = [title] if title else []
    out += [line(list(headers)), "  ".join("-" * width for width in widths)]
    out += [line(row) for row in cells]
    return "\n".join(out)


def split_row(line: str) -> list[str]:
    """The cells of one line that `format_table` wrote."""
    return [cell.strip() for cell in line.strip().split("  ") if cell.strip()]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    else:
        text = str(value)
    return " ".join(text.split())  # never two spaces inside a cell


# -- the client processes ----------------------------------------------------------------------


@dataclass
class Result:
    """Every request of one test: sorted latencies (seconds) and the span they covered."""

    test: str
    clients: int
    latencies: list[float]
    seconds: float

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        """Requests per second over the whole run, all clients together."""
        return self.requests / self.seconds if self.seconds > 0 else float("inf")

    def latency(self, q: float) -> float:
        return percentile(self.latencies, q)

    def row(self) -> list[Any]:
        """The row of the `pyzdb-bench` table: latencies in milliseconds."""
        return [
            self.test,
            self.clients,
            self.requests,
            *(self.latency(q) * 1000 for q in (50, 95, 99, 100)),
            self.throughput,
        ]


HEADERS = ["test", "clients", "requests", "p50 ms", "p95 ms", "p99 ms", "max ms", "req/s"]


class BenchError(Exception):
    """A client could not connect or a request failed: the figures would mean nothing."""


def _client_main(uri: str, timeout: float, barrier: Any, pipe: Connection, progress: Any) -> None:
    """One client process: connect, then run each test the parent names until told to stop."""
    import pyzdb

    try:
        db = pyzdb.connect(uri, timeout=timeout)
        db.query("1")  # reach the server now: a dead URI fails before any test
    except Exception as exc:
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    pipe.send(("ready",))
    try:
        while (command := pipe.recv())[0] == "run":
            _, test, requests, warmup, params = command
            if params:
                ycsb.configure(params)
            pipe.send(_run_share(db, _OPS[test], requests, warmup, barrier, progress))
    except EOFError:  # the parent went away
        pass
    finally:
        db.close()


def _run_share(
    db: Any, op: Callable[[Any], None], requests: int, warmup: int, barrier: Any, progress: Any
) -> tuple[Any, ...]:
    try:
        for _ in range(warmup):
            op(db)
    except Exception as exc:
        barrier.abort()
        return ("error", f"{type(exc).__name__}: {exc}")
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        return ("error", "another client failed while warming up")
    clock = time.perf_counter
    latencies = array("d")
    started = time.monotonic()
    try:
        for index in range(1, requests + 1):
            before = clock()
            op(db)
            latencies.append(clock() - before)
            if not index % _PROGRESS_EVERY:
                with progress.get_lock():
                    progress.value += _PROGRESS_EVERY
    except Exception as exc:
        return ("error", f"{type(exc).__name__}: {exc}")
    return ("ok", started, time.monotonic(), latencies.tobytes())


class ClientPool:
    """`clients` connected client processes that run tests together on request."""

    def __init__(self, uri: str, clients: int, timeout: float = 10.0) -> None:
        if clients < 1:
            raise ValueError("at least one client is needed")
        context = multiprocessing.get_context("spawn")
        self.uri = uri
        self.clients = clients
        self._barrier = context.Barrier(clients)
        self._progress = context.Value("q", 0)
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        try:
            for _ in range(clients):
                mine, theirs = context.Pipe()
                process = context.Process(
                    target=_client_main,
                    daemon=True,
                    args=(uri, timeout, self._barrier, theirs, self._progress),
                )
                process.start()
                theirs.close()
                self._pipes.append(mine)
                self._processes.append(process)
            self._collect("connecting")
        except BaseException:
            self.close()
            raise

    def run(
        self,
        test: str,
        requests: int,
        warmup: int | None = None,
        params: dict[str, Any] | None = None,
        show: bool = False,
    ) -> Result:
        """Run `requests` requests of `test`, split evenly over the clients.

        `params` configures a YCSB workload in each client (`ycsb.configure`); `show` prints a
        progress line on stderr while the clients work.
        """
        if test not in _OPS:
            raise ValueError(f"unknown test {test!r}: choose from {', '.join(_OPS)}")
        with self._progress.get_lock():
            self._progress.value = 0
        shares = [
            requests // self.clients + (i < requests % self.clients) for i in range(self.clients)
        ]
        for pipe, share in zip(self._pipes, shares, strict=True):
            ahead = max(1, min(50, share // 10)) if warmup is None else warmup
            pipe.send(("run", test, share, ahead, params))
        replies = self._collect(test, requests if show else None)
        latencies: list[float] = []
        for reply in replies:
            latencies.extend(array("d", reply[3]))
        latencies.sort()
        span = max(reply[2] for reply in replies) - min(reply[1] for reply in replies)
        return Result(test, self.clients, latencies, span)

    def _collect(self, what: str, total: int | None = None) -> list[tuple[Any, ...]]:
        if total is not None:
            _show_progress(what, self._pipes, self._progress, total)
        replies = []
        for pipe in self._pipes:
            try:
                replies.append(pipe.recv())
            except EOFError:
                replies.append(("error", "a client process died"))
        errors = sorted({reply[1] for reply in replies if reply[0] == "error"})
        if errors:
            raise BenchError(f"{what} against {self.uri} failed: {'; '.join(errors)}")
        return replies

    def close(self) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(("stop",))
            except OSError:
                pass
            pipe.close()
        for process in self._processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _show_progress(what: str, pipes: list[Connection], progress: Any, total: int) -> None:
    """Until every client has answered: rewrite one stderr line with the requests done."""
    from multiprocessing.connection import wait

    started = time.monotonic()
    pending = list(pipes)
    while pending:
        ready = wait(pending, timeout=0.5)
        pending = [pipe for pipe in pending if pipe not in ready]
        _progress_line(
            f"{what}: {min(progress.value, total):,}/{total:,} requests, "
            f"{time.monotonic() - started:.0f} s"
        )
    _progress_line("")


def _progress_line(text: str) -> None:
    sys.stderr.write(f"\r{text:<72}\r" if text else "\r" + " " * 72 + "\r")
    sys.stderr.flush()


class NotOurs(BenchError):
    """The server holds keys pyzdb-bench did not write (and `--force` was not given)."""


def claim(db: Any, keys: Sequence[str], force: bool) -> None:
    """Refuse a server whose root holds keys this tool did not write; then note `keys` as ours.

    The keys pyzdb-bench wrote are listed under `MARKER`, so a second run against the same
    scratch server goes ahead, and a server holding anybody else's data is refused.
    """
    owned = db.query(f"list(db.get({MARKER!r}, []))")
    foreign = db.query(
        "[k for k in db if k not in owned and k != marker]", owned=owned, marker=MARKER
    )
    if foreign and not force:
        shown = ", ".join(repr(key) for key in foreign[:5])
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise NotOurs(
            f"the server holds data pyzdb-bench did not write (keys {shown}{more}); "
            f"it would overwrite {', '.join(keys)}: use a scratch server, or pass "
            "--force"
        )
    db[MARKER] = sorted(set(owned) | set(keys))


def prepare(
    uri: str, tests: Sequence[str], list_size: int, timeout: float, force: bool = False
) -> None:
    """Give the keys the tests read a value: `x`, `c`, and `l` of `list_size` ints."""
    import pyzdb

    db = pyzdb.connect(uri, timeout=timeout)
    try:
        claim(db, ["x", "c", "l"], force)
        db["x"] = 1
        db["c"] = 0
        if "comprehension" in tests:
            # Built by the server: the benchmark measures queries, not the upload of a list.
            db.execute("db['l'] = list(range(n))", n=list_size)
    finally:
        db.close()


# -- the console script ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyzdb-bench",
        description="Latency percentiles and throughput of a running pyzdb-server, with N "
        "concurrent client processes. Writes the keys x, c and l: use a scratch server.",
    )
    parser.add_argument(
        "uri", nargs="?", default=DEFAULT_URI, help=f"server address (default {DEFAULT_URI})"
    )
    parser.add_argument(
        "-c",
        "--clients",
        type=int,
        default=None,
        metavar="CLIENTS",
        help="concurrent client processes (default 4; 2 with --quick)",
    )
    parser.add_argument(
        "-n",
        "--requests",
        type=int,
        default=None,
        metavar="REQUESTS",
        help="requests per test, all clients together (default 10000; 200 with --quick)",
    )
    parser.add_argument(
        "--tests",
        default=",".join(TESTS),
        help=f"comma-separated tests to run (default {','.join(TESTS)})",
    )
    parser.add_argument(
        "--list-size",
        type=int,
        default=None,
        metavar="N",
        help="ints in the comprehension's list (default 10000; 1000 with --quick)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="per-request timeout of each client (default 10)",
    )
    parser.add_argument("--version", action="version", version=version_line("pyzdb-bench"))
    parser.add_argument(
        "--quick", action="store_true", help="a tiny run that checks the set-up, not a measurement"
    )
    parser.add_argument(
        "--workload",
        metavar="A..F",
        help="run YCSB core workloads instead of the tests, e.g. 'a' or "
        "'a,b,c,d,e,f': -n is then the operations per workload",
    )
    parser.add_argument(
        "--records",
        type=int,
        default=None,
        metavar="N",
        help="records loaded into db['ycsb'] (default 100000; 1000 with --quick)",
    )
    parser.add_argument(
        "--fields",
        type=int,
        default=10,
        metavar="N",
        help="fields of 100 bytes per record (default 10)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="run even if the server holds data pyzdb-bench did not write "
        "(it overwrites x, c, l or ycsb)",
    )
    parser.add_argument(
        "--key",
        metavar="FILE",
        help="credential file from pyzdb-keys for a "
        "server started with --keys (default $PYZDB_KEY)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pyzdb-bench`: prints the table; exit 1 if the server fails a request."""
    parser = _parser()
    args = parser.parse_args(argv)
    clients = args.clients if args.clients is not None else (2 if args.quick else 4)
    requests = args.requests if args.requests is not None else (200 if args.quick else 10000)
    list_size = args.list_size if args.list_size is not None else (1000 if args.quick else 10000)
    if args.workload is not None:
        return _workloads(parser, args, clients, requests)
    tests = [name.strip() for name in args.tests.split(",") if name.strip()]
    unknown = [name for name in tests if name not in TESTS]
    if unknown or not tests:
        parser.error(f"unknown tests {unknown}: choose from {', '.join(TESTS)}")
    if clients < 1 or requests < clients or list_size < 0:
        parser.error("need CLIENTS >= 1, REQUESTS >= CLIENTS and a list size >= 0")
    if args.key:  # every client process connects with it (pyzdb.connect reads $PYZDB_KEY)
        os.environ["PYZDB_KEY"] = args.key
    try:
        prepare(args.uri, tests, list_size, args.timeout, args.force)
        with ClientPool(args.uri, clients, args.timeout) as pool:
            results = [pool.run(test, requests) for test in tests]
    except Exception as exc:  # a ConnectionError, a refused request, a dead client
        print(f"pyzdb-bench: {exc}", file=sys.stderr)
        return 1
    title = (
        f"pyzdb-bench {args.uri}: {clients} client processes, {requests} requests per "
        f"test, comprehension over {list_size} ints"
    )
    print(format_table(HEADERS, [result.row() for result in results], title))
    return 0


def _workloads(
    parser: argparse.ArgumentParser, args: argparse.Namespace, clients: int, requests: int
) -> int:
    """`--workload`: load the records once, run each YCSB workload, print one row each."""
    import pyzdb

    names = [name.strip().lower() for name in args.workload.split(",") if name.strip()]
    unknown = [name for name in names if name not in ycsb.MIXES]
    if unknown or not names:
        parser.error(f"unknown workloads {unknown}: choose from {', '.join(ycsb.MIXES)}")
    records = args.records if args.records is not None else (1000 if args.quick else 100_000)
    if records < 2 or args.fields < 1 or clients < 1 or requests < clients:
        parser.error("need --records >= 2, --fields >= 1, CLIENTS >= 1, REQUESTS >= CLIENTS")
    try:
        db = pyzdb.connect(args.uri, timeout=max(args.timeout, 60.0))
        try:
            claim(db, ["ycsb"], args.force)
            ycsb.load(db, records, args.fields, _progress_line)
            _progress_line("")
        finally:
            db.close()
        results = []
        with ClientPool(args.uri, clients, args.timeout) as pool:
            for name in names:
                params = {"workload": name, "records": records, "fields": args.fields}
                result = pool.run(f"ycsb-{name}", requests, params=params, show=True)
                results.append(result)
    except Exception as exc:  # a ConnectionError, a refused request, a dead client
        print(f"pyzdb-bench: {exc}", file=sys.stderr)
        return 1
    title = (
        f"pyzdb-bench {args.uri}: YCSB workloads, {records:,} records of {args.fields} "
        f"fields, {clients} client processes, {requests} operations per workload"
    )
    print(format_table(HEADERS, [result.row() for result in results], title))
    return 0


__all__ = [
    "main",
    "ClientPool",
    "MARKER",
    "NotOurs",
    "claim",
    "Result",
    "BenchError",
    "TESTS",
    "HEADERS",
    "prepare",
    "percentile",
    "median",
    "format_table",
    "split_row",
]
