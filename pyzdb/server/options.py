"""Values of `pyzdb-server`'s options that need parsing or a default computed from the machine."""

from __future__ import annotations

import argparse
import os

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


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


__all__ = ["parse_size", "default_max_memory"]
