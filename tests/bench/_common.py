"""What the benchmark scripts of this folder share: rounds, floors, memory, the figure table.

The machine class these run on has two shared, noisy cores: absolute figures move up to 2x
between runs minutes apart. So every figure is a ratio against a baseline measured in the same
run, rounds of the two are interleaved (and their order alternates, so neither always runs on a
warmer cache), and the statistic is the median of the rounds. The timing itself (`seconds`,
`median_seconds`, `per_second`), the statistics and the tables are `pyzdb.cli.figures`, shared
with `pyzdb-bench`.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pyzdb.cli.figures import format_table, median

#: tests/, where `server_process` lives: the scripts run as `python tests/bench/<name>.py`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FIGURE_HEADERS = ["figure", "pyzdb", "baseline", "ratio", "target", "met"]
#: One record of the bare fsync floor: 100 bytes, a small journal frame.
RECORD = b"r" * 99 + b"\n"


def parser(description: str) -> argparse.ArgumentParser:
    """The options every script has: --quick (a smoke run) and --rounds."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes: checks that the script runs, measures nothing",
    )
    result.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved rounds per figure (default 5; 1 with --quick)",
    )
    return result


def baseline_parser(description: str) -> argparse.ArgumentParser:
    """`parser`, plus the --baseline tree of the scripts that compare two trees of pyzdb."""
    result = parser(description)
    result.add_argument(
        "--baseline",
        required=True,
        metavar="DIR",
        help="a directory holding the baseline's pyzdb package",
    )
    return result


def rounds_of(args: argparse.Namespace) -> int:
    return args.rounds if args.rounds is not None else (1 if args.quick else 5)


def interleave(rounds: int, **measures: Callable[[], float]) -> dict[str, float]:
    """Run each measure once per round, alternating their order; the median of each."""
    samples: dict[str, list[float]] = {name: [] for name in measures}
    order = list(measures.items())
    for index in range(rounds):
        for name, measure in order if index % 2 == 0 else reversed(order):
            samples[name].append(measure())
    return {name: median(values) for name, values in samples.items()}


def fsync_floor(path: Path, records: int, sync: Callable[[int], None] = os.fsync) -> float:
    """Records/s of the bare durable loop: append `RECORD` to a file, fsync each.

    This is the floor a one-at-a-time durable commit cannot beat on this disk: a journal does
    at least this much per commit.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        started = time.perf_counter()
        for _ in range(records):
            os.write(fd, RECORD)
            sync(fd)
        return records / (time.perf_counter() - started)
    finally:
        os.close(fd)


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary directory, removed afterwards: the scripts write nothing into the repo."""
    path = Path(tempfile.mkdtemp(prefix="pyzdb-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x"


def met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def rate(value: float, unit: str = "/s") -> str:
    return f"{value:,.0f}{unit}"


def ms(value: float) -> str:
    return f"{value * 1000:.3g} ms"


def us(value: float) -> str:
    return f"{value * 1e6:.1f} us"


def machine() -> str:
    """Python version, CPUs and load: a run next to a busy neighbour says so in its title."""
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load} at the end"


def print_figures(title: str, rows: list[list[str]]) -> None:
    print(format_table(FIGURE_HEADERS, rows, title))
    print()


def profile_table(profile: cProfile.Profile, title: str, top: int = 12) -> str:
    """The functions where a profiled run spent its own time (tottime), biggest first.

    cProfile adds a constant cost per call, so functions with many cheap calls look heavier
    than they are; the shares still rank where the time goes.
    """
    stats = pstats.Stats(profile)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values()) or 1.0
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:top]
    rows = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in ranked:
        where = f"{_short(filename)}:{line}({name})" if line else name
        rows.append(
            [where, calls, f"{tottime:.3f}", f"{cumtime:.3f}", f"{100 * tottime / total:.1f}%"]
        )
    return format_table(
        ["function (own time)", "calls", "tottime s", "cumtime s", "share"], rows, title
    )


def _short(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("pyzdb", "RestrictedPython", "zmq", "msgpack"):
        if anchor in parts:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(anchor) :])
    return Path(filename).name
