"""Budget checks made around the sandbox rather than inside it.

The guards stop a request between Python-level steps. A single C call (a sort, a comparison,
building a set) runs to its end, and so does the store's own work after the query (detaching
or encoding the result, validating what it stored). When such a step is the last one, no guard
runs after it to notice the overrun. `late_overrun` is the engine's last look before it
commits: a request over its time budget is rolled back, whichever step overran.
`unreplayable` is recovery's error for a journal record that cannot be applied.
"""

from __future__ import annotations

import argparse
import os

from pyzdb.errors import Error, LimitExceeded
from pyzdb.sandbox.guards import Budget

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def late_overrun(budget: Budget) -> LimitExceeded:
    """The error of a request that finished, but after its time budget: it must not commit."""
    return LimitExceeded(
        f"query ran longer than its time budget of {budget.time} s (in its last step); "
        "its effects were undone",
        "time",
    )


def unreplayable(directory: str, seq: int, exc: Exception) -> Error:
    """Recovery met a journal record it cannot apply: say which one, where and why.

    Starting with the record left out would silently lose it and every later write that
    depends on it, so the operator decides, with `pyzdb-recover --until SEQ`.
    """
    from pyzdb.cli.recover import locate

    where = locate(directory, seq)
    place = f" ({where[0]}, offset {where[1]})" if where is not None else ""
    return Error(
        f"cannot recover {directory}: journal record seq {seq}{place} cannot be applied "
        f"({type(exc).__name__}: {exc}); the records before it are intact. To start from "
        f"them, run `pyzdb-recover {directory} --until {seq}` (it copies the directory first)"
    )


def parse_size(text: str) -> int:
    """`--max-memory`'s argument: bytes, or a number with K, M, G or T (powers of 1024)."""
    number = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = number[-1:] if number[-1:] in _UNITS else ""
    try:
        value = float(number[: len(number) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (say 512M or 4G)") from None
    if not 2**20 <= value <= 2**60:
        raise argparse.ArgumentTypeError(f"a memory ceiling of {text!r} makes no sense")
    return int(value)


def default_max_memory() -> int | None:
    """Half of the machine's memory, like a cautious `maxmemory`; None where unknown."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return None


__all__ = ["late_overrun", "unreplayable", "parse_size", "default_max_memory"]
