"""How `pyzdb-bench` and the scripts of `tests/bench/` time things and print what they found.

Timing: `seconds` (one call), `median_seconds` (the median of calls timed one by one: one slow
outlier on a noisy box moves a mean, not a median), `per_second` (a rate over calls in a row).
Statistics: `percentile` (nearest rank) and `median`. Tables: `format_table` writes the
plain-text tables every tool prints, and `split_row` reads a row back (the smoke tests do).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def seconds(call: Callable[[], object]) -> float:
    """Wall time of one call.

    >>> seconds(lambda: None) < 1
    True
    """
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def median_seconds(call: Callable[[], object], count: int) -> float:
    """The median wall time of `count` calls, each timed alone (a round trip's figure).

    >>> median_seconds(lambda: None, 5) < 1
    True
    """
    clock = time.perf_counter
    samples = []
    for _ in range(count):
        before = clock()
        call()
        samples.append(clock() - before)
    return median(samples)


def per_second(call: Callable[..., object], count: int, *args: Any) -> float:
    """Calls per second of `call(*args)` made `count` times in a row (no closure in the loop:
    the figure is the call's own cost).

    >>> per_second(abs, 1000, -1) > 0
    True
    """
    started = time.perf_counter()
    for _ in range(count):
        call(*args)
    return count / (time.perf_counter() - started)


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100).

    >>> percentile([1, 2, 3, 4], 50), percentile([1, 2, 3, 4], 99)
    (2, 4)
    """
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats
    return ordered[min(len(ordered), int(rank)) - 1]


def median(values: Sequence[float]) -> float:
    """The median, the statistic every figure uses: one slow outlier on a noisy box moves
    a mean, not a median.

    >>> median([3.0, 1.0, 100.0])
    3.0
    """
    return statistics.median(values)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned.

    Columns are separated by at least two spaces and no cell holds two consecutive spaces,
    so a reader (or the smoke test) can split a row back into its cells with `split_row`.

    >>> print(format_table(["test", "req/s"], [["get", 12345.0], ["set", 9.5]]))
    test   req/s
    ----  ------
    get   12,345
    set      9.5
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
    """The cells of one line that `format_table` wrote.

    >>> split_row("get   12,345  a b")
    ['get', '12,345', 'a b']
    """
    return [cell.strip() for cell in line.strip().split("  ") if cell.strip()]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    else:
        text = str(value)
    return " ".join(text.split())  # never two spaces inside a cell


__all__ = [
    "seconds",
    "median_seconds",
    "per_second",
    "percentile",
    "median",
    "format_table",
    "split_row",
]
