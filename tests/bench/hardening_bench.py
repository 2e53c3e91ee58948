"""What the round-two hardening costs: this tree against a baseline tree, in the same run.

    git archive <commit before the hardening> pyzdb | tar -x -C /tmp/baseline
    python tests/bench/hardening_bench.py --baseline /tmp/baseline [--rounds R] [--quick]

Each round runs every workload once in a fresh process per tree (alternating which tree goes
first), and each figure is the median over rounds of (this tree / baseline): under 1.05 is the
issue's "no more than 5%". Workloads, on the records workload of the other benchmarks:

- embedded: storing 100,000 small dicts `{'id', 'name', 'age'}` in one execute; a
  comprehension over them; map/filter over them (the iterator-depth guard); 3,000 small
  executes `db['c'] += 1` (fsync `no`: the per-request path, late-overrun check included);
- remote, a real `pyzdb-server` (this tree: under its supervisor) on ipc://: 2,000
  `db['x'].get()` round trips and 2,000 `db['c'] += 1` with `--fsync no` (the in-flight page
  writes and the reply cache's bookkeeping).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import _common

HERE = Path(__file__).resolve().parents[2]

WORKLOAD = r'''
import json, os, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
n, small = int(sys.argv[2]), int(sys.argv[3])
import pyzdb
assert pyzdb.__file__.startswith(sys.argv[1]), (pyzdb.__file__, sys.argv[1])
from pyzdb.engine import Engine, EngineConfig
from pyzdb.server import server_main
out = {}
engine = Engine(tempfile.mkdtemp(), EngineConfig(fsync="no"))
records = [{"id": i, "name": "user%d" % i, "age": i % 90} for i in range(n)]
def timed(name, fn):
    started = time.perf_counter(); fn(); out[name] = time.perf_counter() - started
timed(f"embedded: store {n:,} records",
      lambda: engine.run("db['r'] = r", write=True, syntax="exec", params={"r": records}))
timed(f"embedded: comprehension over {n:,} records",
      lambda: engine.run("[r['name'] for r in db['r'] if r['age'] > 45]", write=False))
timed(f"embedded: map/filter over {n:,} records",
      lambda: engine.run("len(list(map(abs, filter(None, (r['age'] for r in db['r'])))))",
                         write=False))
engine.run("db['c'] = 0", write=True, syntax="exec")
def commits():
    for _ in range(small):
        engine.run("db['c'] += 1", write=True, syntax="exec")
timed(f"embedded: {small:,} small executes", commits)
engine.close()
scratch = tempfile.mkdtemp(prefix="pyzdb-")
uri = f"ipc://{scratch}/s.sock"
pid = os.fork()
if pid == 0:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1); os.dup2(devnull, 2)
    os._exit(server_main(["--data", scratch + "/data", "--bind", uri, "--fsync", "no"]))
db = pyzdb.connect(uri, timeout=30)
while True:
    try:
        db.ping(); break
    except pyzdb.ConnectionError:
        pass
db["x"] = 1
db["c"] = 0
def gets():
    for _ in range(small):
        db["x"].get()
def increments():
    for _ in range(small):
        db.execute("db['c'] += 1")
timed(f"remote: {small:,} db['x'].get()", gets)
timed(f"remote: {small:,} db['c'] += 1", increments)
db.close()
import signal
os.kill(pid, signal.SIGTERM)
os.waitpid(pid, 0)
print(json.dumps(out))
'''


def run_tree(tree: Path, n: int, small: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", WORKLOAD, str(tree), str(n), str(small)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(tree)})
    if done.returncode:
        raise RuntimeError(f"the workload failed on {tree}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = _common.parser(__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, metavar="DIR",
                        help="a directory holding the baseline's pyzdb package")
    args = parser.parse_args()
    rounds = _common.rounds_of(args)
    n, small = (2_000, 50) if args.quick else (100_000, 2_000)
    ratios: dict[str, list[float]] = {}
    pairs: dict[str, list[tuple[float, float]]] = {}
    for index in range(rounds):
        trees = [("new", HERE), ("old", Path(args.baseline))]
        got = {}
        for name, tree in trees if index % 2 == 0 else reversed(trees):
            got[name] = run_tree(tree, n, small)
        for key in got["new"]:
            ratios.setdefault(key, []).append(got["new"][key] / got["old"][key])
            pairs.setdefault(key, []).append((got["new"][key], got["old"][key]))
    rows = []
    for key, values in ratios.items():
        new = statistics.median(p[0] for p in pairs[key])
        old = statistics.median(p[1] for p in pairs[key])
        ratio = statistics.median(values)
        rows.append([key, f"{new * 1000:.1f} ms", f"{old * 1000:.1f} ms", f"{ratio:.3f}",
                     "<= 1.05", "yes" if ratio <= 1.05 else "NO"])
    print(_common.format_table(["workload", "hardened", "baseline", "ratio", "target", "met"],
                               rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
