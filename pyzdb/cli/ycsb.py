"""The YCSB core workloads A-F for `pyzdb-bench --workload`, on a collection of records.

YCSB (Cooper et al., 2010) is the usual yardstick of key-value and document stores. Its table
of records becomes `db['ycsb']`, a list of dicts `{'field0': <100 bytes>, ...}` whose index is
the record's key, so that a scan (workload E) is a slice. Operations, one request each unless
said:

- read: ``db['ycsb'][k].get()``, the whole record;
- update: ``db['ycsb'][k]['fieldN'] = value``, one field (YCSB's default `writeallfields=false`);
- insert: ``db['ycsb'].append(record)``;
- scan: ``db.query("db['ycsb'][s:s + n]")`` with n uniform in 1..100;
- read-modify-write (F): a read, then an update of the same record: two requests, one operation.

Workload mixes, YCSB's core properties: A 50/50 read/update, B 95/5, C read only, D 95/5
read/insert reading the latest records, E 95/5 scan/insert, F 50/50 read/read-modify-write.
Keys are drawn from YCSB's scrambled Zipfian distribution (constant 0.99), D's from the latest.

This module is imported by the client processes of `pyzdb.cli.benchpool`: `configure` sets each
client's state (its own random generator, the record count) before a workload runs.
"""

from __future__ import annotations

import os
import random
from typing import Any

#: workload -> [(operation, share)], YCSB's core workloads.
MIXES: dict[str, list[tuple[str, float]]] = {
    "a": [("read", 0.5), ("update", 0.5)],
    "b": [("read", 0.95), ("update", 0.05)],
    "c": [("read", 1.0)],
    "d": [("read", 0.95), ("insert", 0.05)],
    "e": [("scan", 0.95), ("insert", 0.05)],
    "f": [("read", 0.5), ("rmw", 0.5)],
}
FIELD_LENGTH = 100
MAX_SCAN = 100
ZIPF_CONSTANT = 0.99
#: Records per load request: each request is one unit within the server's time budget.
LOAD_CHUNK = 5000
LOAD = (
    "db['ycsb'].extend([{'field%d' % f: ('%d.%d:' % (i, f) * 25)[:w] for f in range(fields)}"
    " for i in range(start, stop)])"
)


class Zipfian:
    """YCSB's ZipfianGenerator (Gray et al., "Quickly generating billion-record synthetic
    databases"): item 0 is the most popular; `scrambled` spreads the popular items over the
    key space with a hash, as YCSB's ScrambledZipfianGenerator does."""

    def __init__(self, items: int, theta: float = ZIPF_CONSTANT) -> None:
        self.items = items
        self.theta = theta
        self.zetan = sum(1.0 / (i**theta) for i in range(1, items + 1))
        self.alpha = 1.0 / (1.0 - theta)
        zeta2 = 1.0 + 0.5**theta
        self.eta = (1.0 - (2.0 / items) ** (1.0 - theta)) / (1.0 - zeta2 / self.zetan)
        self.half = 1.0 + 0.5**theta

    def next(self, rnd: random.Random) -> int:
        u = rnd.random()
        uz = u * self.zetan
        if uz < 1.0:
            return 0
        if uz < self.half:
            return 1
        return min(self.items - 1, int(self.items * (self.eta * u - self.eta + 1.0) ** self.alpha))

    def scrambled(self, rnd: random.Random) -> int:
        return _fnv(self.next(rnd)) % self.items


def _fnv(value: int) -> int:
    """FNV-1a 64 of the int's 8 bytes, as YCSB scrambles its Zipfian keys."""
    digest = 0xCBF29CE484222325
    for _ in range(8):
        digest ^= value & 0xFF
        digest = (digest * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        value >>= 8
    return digest


class _State:
    """One client's view of a workload: its random stream, keys and record count."""

    def __init__(self, workload: str, records: int, fields: int) -> None:
        self.workload = workload
        self.fields = fields
        self.count = records  # this client's lower bound of len(db['ycsb'])
        self.rnd = random.Random(os.getpid() ^ records)
        self.zipf = Zipfian(records)
        self.ops: list[str] = []
        self.cuts: list[float] = []
        total = 0.0
        for op, share in MIXES[workload]:
            total += share
            self.ops.append(op)
            self.cuts.append(total)

    def key(self) -> int:
        if self.workload == "d":  # the latest records are the most popular
            return max(0, self.count - 1 - self.zipf.next(self.rnd))
        return self.zipf.scrambled(self.rnd)

    def value(self) -> str:
        return f"{self.rnd.getrandbits(4 * FIELD_LENGTH):0{FIELD_LENGTH}x}"

    def field(self) -> str:
        return f"field{self.rnd.randrange(self.fields)}"

    def op(self) -> str:
        u = self.rnd.random()
        for op, cut in zip(self.ops, self.cuts, strict=True):
            if u < cut:
                return op
        return self.ops[-1]


_STATE: _State | None = None


def configure(params: dict[str, Any]) -> None:
    """Set this client process's workload state (`pyzdb.cli.benchpool` calls it before a run)."""
    global _STATE
    _STATE = _State(params["workload"], params["records"], params["fields"])


def operation(db: Any) -> None:
    """One YCSB operation of the configured workload."""
    state = _STATE
    if state is None:
        raise RuntimeError("ycsb.configure was not called in this client")
    op = state.op()
    if op == "read":
        db["ycsb"][state.key()].get()
    elif op == "update":
        db["ycsb"][state.key()][state.field()] = state.value()
    elif op == "insert":
        db["ycsb"].append({f"field{f}": state.value() for f in range(state.fields)})
        state.count += 1
    elif op == "scan":
        start = state.key()
        db.query("db['ycsb'][s:s + n]", s=start, n=state.rnd.randint(1, MAX_SCAN))
    else:  # read-modify-write
        key = state.key()
        record = db["ycsb"][key].get()
        field = state.field()
        db["ycsb"][key][field] = (
            record[field][: FIELD_LENGTH // 2] + state.value()[: FIELD_LENGTH // 2]
        )


def load(db: Any, records: int, fields: int, progress: Any = None) -> None:
    """Fill `db['ycsb']` with `records` records of `fields` fields, server-side, in chunks."""
    db["ycsb"] = []
    for start in range(0, records, LOAD_CHUNK):
        stop = min(records, start + LOAD_CHUNK)
        db.execute(LOAD, start=start, stop=stop, fields=fields, w=FIELD_LENGTH)
        if progress is not None:
            progress(f"loading: {stop:,}/{records:,} records")


__all__ = ["MIXES", "Zipfian", "configure", "load", "operation"]
