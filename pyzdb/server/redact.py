"""What an error reply may say: no server paths, no heap addresses.

A failure of the server's own work (a checkpoint that cannot be written, a blob that cannot be
read) is reported with the OS's message, which names the file: the data directory's absolute
path, or part of it. A client learns nothing it needs from it, and the path tells an attacker
the layout of the host. `redact` rewrites such an error before it becomes a reply: every
spelling of the data directory becomes "<data directory>", and heap addresses become `0x...`
(the sandbox does the same for a query's own errors). The operator's log keeps the original.
"""

from __future__ import annotations

import os
import re

from pyzdb.errors import Error

#: A heap address as CPython prints it in a repr.
ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


class Redactor:
    """Rewrites error messages for one data directory (see the module docstring)."""

    def __init__(self, data: str) -> None:
        spellings = {data, os.path.abspath(data), os.path.realpath(data)}
        #: Longest first, so that a spelling inside another is not replaced half-way.
        self._paths = sorted((p for p in spellings if len(p) > 1), key=len, reverse=True)

    def __call__(self, exc: BaseException) -> BaseException:
        """`exc`, or an exception of the same class whose message names no path or address."""
        text = str(exc)
        clean = ADDRESS.sub("0x...", text)
        for path in self._paths:
            clean = clean.replace(path, "<data directory>")
        if clean == text:
            return exc
        try:
            redacted = type(exc)(clean)
        except Exception:  # a constructor that wants other arguments
            redacted = Error(f"{type(exc).__name__}: {clean}")
        for name in ("budget", "pyzdb_line", "pyzdb_column", "__notes__"):
            if hasattr(exc, name):
                setattr(redacted, name, getattr(exc, name))
        return redacted


__all__ = ["Redactor", "ADDRESS"]
