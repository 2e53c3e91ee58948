"""`pyzdb-bench`: latency and throughput of a running `pyzdb-server`, like `redis-benchmark`.

N client processes (`pyzdb.cli.benchpool`, which says how they are timed) run each test's
requests together; the table gives the latency percentiles and the throughput of each test
(`pyzdb.cli.figures`).

The tests write the keys `x` (get, set), `c` (incr) and `l` (comprehension) of the server's
root, and `--workload a..f` (the YCSB core workloads, `pyzdb.cli.ycsb`) writes `ycsb`. The keys it
wrote are listed under the root key `pyzdb-bench`, and it refuses to run against a server that
holds any other key unless given `--force`: a server with data someone cares about is left
alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from pyzdb.cli import ycsb
from pyzdb.cli.benchpool import HEADERS, TESTS, BenchError, ClientPool, progress_line
from pyzdb.cli.figures import format_table
from pyzdb.limits import DEFAULT_URI
from pyzdb.version import version_line

#: The root key that lists the keys pyzdb-bench wrote (see `claim`).
MARKER = "pyzdb-bench"


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
            ycsb.load(db, records, args.fields, progress_line)
            progress_line("")
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


__all__ = ["main", "MARKER", "NotOurs", "claim", "prepare"]
