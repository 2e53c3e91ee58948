"""Who holds a data directory, and how to reach it: the `ENDPOINT` file a server leaves there.

Why: one process at a time may open a data directory. A user who runs the quick-start server
and then `pyzdb.open("./pyzdb-data")` (or `pyzdb-eval --data`) gets "in use by another
process"; the useful answer is the address of that process. The server writes the URI it
serves on into `<data>/ENDPOINT` after binding and removes it when it stops, and the error
raised for a locked directory quotes it. The file is only a hint: a stale one (a server killed
with -9) names an address that no longer answers, which the message allows for.
"""

from __future__ import annotations

import contextlib
import os

FILE_NAME = "ENDPOINT"


def write_endpoint(directory: str | os.PathLike[str], uri: str) -> None:
    """Record the URI a server serves `directory` on (best effort: a hint, not state)."""
    with contextlib.suppress(OSError):
        with open(os.path.join(directory, FILE_NAME), "w", encoding="utf-8") as handle:
            handle.write(uri + "\n")


def remove_endpoint(directory: str | os.PathLike[str]) -> None:
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(directory, FILE_NAME))


def read_endpoint(directory: str | os.PathLike[str]) -> str | None:
    try:
        with open(os.path.join(directory, FILE_NAME), encoding="utf-8") as handle:
            uri = handle.read(4096).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return uri or None


def in_use_hint(directory: str | os.PathLike[str]) -> str:
    """What to do about a data directory another process holds."""
    uri = read_endpoint(directory)
    if uri:
        return (
            f"a pyzdb-server serves it on {uri}: reach it with pyzdb.connect({uri!r}), "
            f"`pyzdb {uri}` or `pyzdb-eval --connect {uri} ...`"
        )
    return (
        "if that process is a pyzdb-server, reach it with pyzdb.connect(uri), `pyzdb URI` "
        "or `pyzdb-eval --connect URI ...` (default tcp://127.0.0.1:5559) instead of "
        "opening the directory"
    )


__all__ = ["write_endpoint", "remove_endpoint", "read_endpoint", "in_use_hint"]
