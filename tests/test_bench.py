"""Smoke tests of the benchmarks: `pyzdb-bench` and each `tests/bench/` script, in `--quick` mode.

They check that each runs to the end and prints a well-formed table, never how fast anything
is: timings on a shared machine are noise, and a timed assert would fail at random.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from server_process import ServerProcess

from pyzdb.cli.benchpool import HEADERS, TESTS
from pyzdb.cli.figures import format_table, percentile, split_row

BENCH_DIR = Path(__file__).parent / "bench"
BENCH_SCRIPT = Path(sys.executable).with_name("pyzdb-bench")
FIGURE_HEADERS = ["figure", "pyzdb", "baseline", "ratio", "target", "met"]
NUMBER = re.compile(r"^[\d,]+(\.\d+)?(e[-+]?\d+)?$")


def table(output: str, headers: list[str]) -> list[list[str]]:
    """The rows of the table with these headers in `output`; fails if it is malformed."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if split_row(line) == headers]
    assert len(starts) == 1, f"expected one table with headers {headers}:\n{output}"
    start = starts[0]
    assert set(lines[start + 1]) <= {"-", " "} and "-" in lines[start + 1], output
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        cells = split_row(line)
        assert len(cells) == len(headers), f"row {line!r} does not fit {headers}"
        rows.append(cells)
    assert rows, f"the table with headers {headers} has no rows:\n{output}"
    return rows


def number(cell: str) -> float:
    assert NUMBER.match(cell), f"not a number: {cell!r}"
    return float(cell.replace(",", ""))


def run(command: list[str], timeout: float = 120) -> str:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parent.parent
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


def test_format_table_round_trips_through_split_row():
    text = format_table(["name", "value"], [["a b", 1.5], ["c", 12345.0]], "title")
    lines = text.splitlines()
    assert lines[0] == "title"
    assert [split_row(line) for line in lines[3:]] == [["a b", "1.5"], ["c", "12,345"]]


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert [percentile(values, q) for q in (1, 50, 95, 99, 100)] == [1, 50, 95, 99, 100]
    assert percentile([7.0], 99) == 7.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("bench") / "data") as process:
        yield process


def test_pyzdb_bench_prints_one_row_per_test(server):
    if not BENCH_SCRIPT.exists():
        pytest.fail(f"{BENCH_SCRIPT} is missing: run `pip install -e .`")
    output = run([str(BENCH_SCRIPT), server.uri, "--quick", "-c", "2", "-n", "40"])
    rows = table(output, HEADERS)
    assert [row[0] for row in rows] == list(TESTS)
    for row in rows:
        clients, requests, p50, p95, p99, top, throughput = map(number, row[1:])
        assert (clients, requests) == (2, 40)
        assert 0 < p50 <= p95 <= p99 <= top
        assert throughput > 0


def test_pyzdb_bench_reports_an_unreachable_server(tmp_path):
    done = subprocess.run(
        [
            str(BENCH_SCRIPT),
            f"ipc://{tmp_path}/nobody",
            "--quick",
            "--timeout",
            "0.5",
            "--tests",
            "get",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "pyzdb-bench:" in done.stderr and "Traceback" not in done.stderr


def test_pyzdb_bench_runs_the_ycsb_workloads(server):
    done = subprocess.run(
        [
            str(BENCH_SCRIPT),
            server.uri,
            "--workload",
            "a,b,c,d,e,f",
            "--records",
            "300",
            "--fields",
            "3",
            "-c",
            "2",
            "-n",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    rows = table(done.stdout, HEADERS)
    assert [row[0] for row in rows] == [f"ycsb-{name}" for name in "abcdef"]
    for row in rows:
        clients, requests, p50, p95, p99, top, throughput = map(number, row[1:])
        assert (clients, requests) == (2, 60)
        assert 0 < p50 <= p95 <= p99 <= top and throughput > 0
    assert "requests" in done.stderr, "a progress line while it runs"
    import pyzdb

    db = pyzdb.connect(server.uri)
    assert db.query("len(db['ycsb'])") >= 300  # workloads D and E insert
    assert sorted(db.query("db['ycsb'][0]")) == ["field0", "field1", "field2"]
    db.close()


def test_pyzdb_bench_leaves_a_server_with_foreign_data_alone(tmp_path):
    import pyzdb

    with ServerProcess(tmp_path / "data") as other:
        db = pyzdb.connect(other.uri)
        db["x"] = "precious"
        for extra in ([], ["--workload", "c", "--records", "50", "--fields", "1"]):
            done = subprocess.run(
                [str(BENCH_SCRIPT), other.uri, "--quick", "-c", "1", "-n", "5", *extra],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 1
            assert "did not write" in done.stderr and "--force" in done.stderr
            assert db.query("sorted(db)") == ["x"] and db["x"].get() == "precious"
        done = subprocess.run(
            [
                str(BENCH_SCRIPT),
                other.uri,
                "--quick",
                "-c",
                "1",
                "-n",
                "5",
                "--tests",
                "get",
                "--force",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert db["x"].get() == 1
        db.close()


@pytest.mark.parametrize(
    "script",
    ["engine_bench.py", "server_bench.py", "docs_bench.py", "replica_bench.py", "curve_bench.py"],
)
def test_bench_script_prints_its_figures(script):
    output = run([sys.executable, str(BENCH_DIR / script), "--quick"])
    rows = table(output, FIGURE_HEADERS)
    assert len({row[0] for row in rows}) == len(rows), "each figure has its own row"
    for figure, _value, _baseline, ratio, target, met in rows:
        assert re.match(r"\([a-f]\) ", figure), figure
        assert re.match(r"^[\d,.]+( effects/s|x|x faster)$", ratio), ratio
        assert met in ({"yes", "NO"} if target not in ("-", "report") else {"-"}), met
