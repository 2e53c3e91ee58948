"""Issue 12's benchmarks: what CURVE (`pyzdb-server --keys`) costs, against the same server
without keys, in the same run.

    python tests/bench/curve_bench.py [--quick] [--rounds R]

Two real `pyzdb-server` processes (the console script) on tcp 127.0.0.1, one with `--keys`
(every connection CurveZMQ-encrypted and ZAP-authenticated, every message checked against the
access list), one without; the same client code talks to both, rounds interleaved:

(a) Median round trip of `db['x'].get()`. Target <= 1.2x.
(b) A 1% selective query on a records workload: 100,000 small dicts
    `{'id': i, 'name': 'user%d' % i, 'group': i % 100}`, `[r for r in db['u'] if r['group'] == 7]`
    (1,000 records back). Target <= 1.2x. Beside it the same over 1,000,000 ints.
(c) A large reply: `db['big']`, 8 MiB of bytes. Reported: the extra time per MiB that
    encryption adds (CURVE's cost grows with the bytes moved, not the number of requests).
"""

from __future__ import annotations

import sys

import _common
from _common import interleave, print_figures, ratio, us
from server_process import ServerProcess

import pyzdb
from pyzdb.cli.figures import median_seconds
from pyzdb.net import keys

USERS = "[{'id': i, 'name': 'user%d' % i, 'group': i % 100} for i in range(n)]"
SELECT_USERS = "[r for r in db['u'] if r['group'] == 7]"
SELECT_INTS = "[v for v in db['l'] if v % 100 == 7]"


def main() -> int:
    args = _common.parser(__doc__.split("\n\n")[0]).parse_args()
    rounds = _common.rounds_of(args)
    records = 2_000 if args.quick else 100_000
    ints = 10_000 if args.quick else 1_000_000
    big = (1 if args.quick else 8) * 2**20
    count = 50 if args.quick else 2_000
    heavy = 3 if args.quick else 30
    with _common.scratch_dir() as root:
        keys.init_keys(root / "keys")
        credential = keys.add_key(root / "keys", "bench", "admin", out=root / "bench.key")
        plain = ServerProcess(root / "plain", tcp=True, script=True).start()
        keyed = ServerProcess(
            root / "keyed", "--keys", str(root / "keys"), tcp=True, script=True, key=credential
        ).start()
        try:
            dbs = {
                "plain": pyzdb.connect(plain.uri, timeout=120),
                "curve": pyzdb.connect(keyed.uri, timeout=120, key=str(credential)),
            }
            for db in dbs.values():
                db.execute(
                    f"db['u'] = {USERS}\ndb['l'] = list(range(m))\ndb['x'] = 1\n"
                    "db['big'] = b'b' * size",
                    n=records,
                    m=ints,
                    size=big,
                )
                assert len(db.query(SELECT_USERS)) == records // 100
            measures = {}
            for name, db in dbs.items():
                measures[f"rtt-{name}"] = lambda db=db: median_seconds(lambda: db["x"].get(), count)
                measures[f"users-{name}"] = lambda db=db: median_seconds(
                    lambda: db.query(SELECT_USERS), heavy
                )
                measures[f"ints-{name}"] = lambda db=db: median_seconds(
                    lambda: db.query(SELECT_INTS), heavy
                )
                measures[f"big-{name}"] = lambda db=db: median_seconds(
                    lambda: db.query("db['big']"), heavy
                )
            for measure in measures.values():
                measure()  # warm up connections and caches outside the rounds
            t = interleave(rounds, **measures)
            for db in dbs.values():
                db.close()
        finally:
            plain.close()
            keyed.close()
    mib = big / 2**20
    per_mib = (t["big-curve"] - t["big-plain"]) / mib
    rows = [
        [
            "(a) db['x'].get() round trip, CURVE",
            us(t["rtt-curve"]),
            f"no keys {us(t['rtt-plain'])}",
            ratio(t["rtt-curve"], t["rtt-plain"]),
            "<= 1.2x",
            _common.met(t["rtt-curve"] <= 1.2 * t["rtt-plain"]),
        ],
        [
            f"(b) 1% of {records:,} records, CURVE",
            us(t["users-curve"]),
            f"no keys {us(t['users-plain'])}",
            ratio(t["users-curve"], t["users-plain"]),
            "<= 1.2x",
            _common.met(t["users-curve"] <= 1.2 * t["users-plain"]),
        ],
        [
            f"(b) 1% of {ints:,} ints, CURVE",
            us(t["ints-curve"]),
            f"no keys {us(t['ints-plain'])}",
            ratio(t["ints-curve"], t["ints-plain"]),
            "<= 1.2x",
            _common.met(t["ints-curve"] <= 1.2 * t["ints-plain"]),
        ],
        [
            f"(c) {mib:g} MiB reply, CURVE ({per_mib * 1000:.2f} ms/MiB more)",
            us(t["big-curve"]),
            f"no keys {us(t['big-plain'])}",
            ratio(t["big-curve"], t["big-plain"]),
            "report",
            "-",
        ],
    ]
    print_figures(
        f"curve_bench: pyzdb-server --keys vs no keys, {_common.machine()}, "
        f"median of {rounds} interleaved rounds",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
