"""Issue 8's benchmarks: collections of records, embedded and remote, against plain Python.

    python tests/bench/docs_bench.py [--quick] [--rounds R] [--records N] [--profile FIGURE]

`db['users']` holds N small dicts `{'id', 'name', 'age', 'city', 'tags': [..]}` (default
200,000). Every figure is a ratio against a baseline measured in the same run, rounds
interleaved (see `_common.py`):

(a) remote `db['users'].get()` vs a msgpack pack+unpack of the same plain list. Target <= 2x.
(b) embedded `db['users'].get()` vs a `marshal` dumps+loads of the same list. Target <= 2x.
(c) remote: a query returning 1% of the records vs fetching all and filtering on the client.
    Target: >= 5x faster.
(d) `db.execute("db['users'] = [...]")` (embedded) vs building the same list in plain Python.
    Target <= 3x.
(e) `for u in db['users']: u['age'] += 1` in one execute (embedded) vs the same loop over a
    plain list. Target <= 5x.
(f) a slow read (a 1-2 s scan whose reply is > 1 MiB) over the wire vs the same read embedded.
    Target <= 1.5x.

Baselines run with the cyclic GC off (`without_gc`): with several 200,000-record structures
alive, a collection during the baseline walks all of them and would flatter every ratio. pyzdb
runs as a user runs it, GC on (it pauses the GC itself where it builds many containers).

`--profile (a)|(b)|(d)|(e)` prints a cProfile of one run of that figure's pyzdb side: where the
time goes when a target is missed. Everything is written under a temporary directory.
"""

from __future__ import annotations

import cProfile
import gc
import marshal
import sys

import _common
import msgpack
from _common import interleave, ms, print_figures, ratio
from server_process import ServerProcess

import pyzdb
from pyzdb.cli.figures import seconds

USERS = (
    "[{'id': i, 'name': 'user%d' % i, 'age': i % 90, 'city': cities[i % 4], "
    "'tags': ['t%d' % (i % 7), 'x']} for i in range(n)]"
)
CITIES = ["Paris", "Lyon", "Oslo", "Lima"]
AGE_LOOP = "for u in db['users']:\n    u['age'] += 1"
ONE_PERCENT = "[u for u in db['users'] if u['id'] % 100 == 7]"
SLOW_READ = (
    "[u for u in db['users'] if sum(len(t) for t in u['tags']) + u['age'] >= 0 "
    "and u['name'] * 8 != ''][:m]"
)


def without_gc(fn):
    """`fn` timed with the cyclic GC off, as the baselines are measured."""

    def timed() -> float:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return seconds(fn)
        finally:
            if enabled:
                gc.enable()

    return timed


def users(count: int) -> list[dict]:
    return eval(USERS, {"n": count, "cities": CITIES})


def plain_age_loop(records: list[dict]) -> None:
    for u in records:
        u["age"] += 1


def bench(root, count: int, rounds: int, profile: str | None) -> list[list[str]]:
    plain = users(count)
    rows: list[list[str]] = []
    embedded = pyzdb.open(root / "embedded", fsync="no", time_limit=600)
    embedded.execute(f"db['users'] = {USERS}", n=count, cities=CITIES)
    with ServerProcess(root / "remote", "--fsync", "no", "--time-limit", "600") as server:
        remote = pyzdb.connect(server.uri, timeout=600)
        remote.execute(f"db['users'] = {USERS}", n=count, cities=CITIES)
        if remote["users"].get() != plain or embedded["users"].get() != plain:
            raise AssertionError("pyzdb and plain Python disagree on the records")

        got = interleave(
            rounds,
            pyzdb=lambda: seconds(lambda: remote["users"].get()),
            base=without_gc(lambda: msgpack.unpackb(msgpack.packb(plain))),
        )
        rows.append(
            [
                f"(a) remote db['users'].get(), {count:,} records",
                ms(got["pyzdb"]),
                f"msgpack {ms(got['base'])}",
                ratio(got["pyzdb"], got["base"]),
                "<= 2x",
                _common.met(got["pyzdb"] <= 2 * got["base"]),
            ]
        )

        got = interleave(
            rounds,
            pyzdb=lambda: seconds(lambda: embedded["users"].get()),
            base=without_gc(lambda: marshal.loads(marshal.dumps(plain))),
        )
        rows.append(
            [
                f"(b) embedded db['users'].get(), {count:,} records",
                ms(got["pyzdb"]),
                f"marshal {ms(got['base'])}",
                ratio(got["pyzdb"], got["base"]),
                "<= 2x",
                _common.met(got["pyzdb"] <= 2 * got["base"]),
            ]
        )

        def fetch_and_filter() -> None:
            [u for u in remote["users"].get() if u["id"] % 100 == 7]

        got = interleave(
            rounds,
            pyzdb=lambda: seconds(lambda: remote.query(ONE_PERCENT)),
            base=lambda: seconds(fetch_and_filter),
        )
        rows.append(
            [
                f"(c) remote query of 1% of {count:,} records",
                ms(got["pyzdb"]),
                f"fetch all + filter {ms(got['base'])}",
                ratio(got["base"], got["pyzdb"]) + " faster",
                ">= 5x",
                _common.met(got["base"] >= 5 * got["pyzdb"]),
            ]
        )

        big = max(count // 4, 100)  # > 1 MiB of records
        base_reply = embedded.query(SLOW_READ, m=big)
        if remote.query(SLOW_READ, m=big) != base_reply:
            raise AssertionError("the slow read differs remotely")
        got = interleave(
            rounds,
            pyzdb=lambda: seconds(lambda: remote.query(SLOW_READ, m=big)),
            base=lambda: seconds(lambda: embedded.query(SLOW_READ, m=big)),
        )
        rows.append(
            [
                f"(f) slow read over the wire, {len(msgpack.packb(base_reply)) >> 10:,} KiB reply",
                ms(got["pyzdb"]),
                f"embedded {ms(got['base'])}",
                ratio(got["pyzdb"], got["base"]),
                "<= 1.5x",
                _common.met(got["pyzdb"] <= 1.5 * got["base"]),
            ]
        )
        if profile == "(a)":
            _profile("(a)", lambda: remote["users"].get())
        remote.close()

    def build() -> float:
        return seconds(lambda: embedded.execute(f"db['users'] = {USERS}", n=count, cities=CITIES))

    got = interleave(rounds, pyzdb=build, base=without_gc(lambda: users(count)))
    rows.append(
        [
            f"(d) execute db['users'] = [{count:,} records]",
            ms(got["pyzdb"]),
            f"plain {ms(got['base'])}",
            ratio(got["pyzdb"], got["base"]),
            "<= 3x",
            _common.met(got["pyzdb"] <= 3 * got["base"]),
        ]
    )

    got = interleave(
        rounds,
        pyzdb=lambda: seconds(lambda: embedded.execute(AGE_LOOP)),
        base=without_gc(lambda: plain_age_loop(plain)),
    )
    rows.append(
        [
            f"(e) for u in db['users']: u['age'] += 1, {count:,}",
            ms(got["pyzdb"]),
            f"plain {ms(got['base'])}",
            ratio(got["pyzdb"], got["base"]),
            "<= 5x",
            _common.met(got["pyzdb"] <= 5 * got["base"]),
        ]
    )
    if profile == "(b)":
        _profile("(b)", lambda: embedded["users"].get())
    elif profile == "(d)":
        _profile("(d)", build)
    elif profile == "(e)":
        _profile("(e)", lambda: embedded.execute(AGE_LOOP))
    embedded.close()
    return rows


def _profile(figure: str, fn) -> None:
    profile = cProfile.Profile()
    profile.enable()
    fn()
    profile.disable()
    print(_common.profile_table(profile, f"cProfile of one run of {figure} (pyzdb side)"))
    print()


def main() -> int:
    parser = _common.parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--records",
        type=int,
        default=None,
        help="records in db['users'] (default 200,000; 2,000 with --quick)",
    )
    parser.add_argument("--profile", choices=["(a)", "(b)", "(d)", "(e)"], default=None)
    args = parser.parse_args()
    count = args.records or (2_000 if args.quick else 200_000)
    rounds = _common.rounds_of(args)
    gc.collect()
    with _common.scratch_dir() as root:
        rows = bench(root, count, rounds, args.profile)
    print_figures(
        f"docs_bench: {count:,} records, {_common.machine()}, median of {rounds} "
        "interleaved rounds",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
