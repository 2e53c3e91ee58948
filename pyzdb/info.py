"""`db.info()`: the state of a database in sections, like Redis `INFO`.

Why a dict of sections assembled in one place: the server, the embedded database and later
features (replication, auth) each know a part of the picture. `engine_sections` gives what any
engine knows (version, data directory, journal, tree, budgets); a caller adds its own sections
to the dict it returns (`server` adds `clients`), so a new feature adds one key, not a new call.

Every value is plain data (str, int, float, bool, None) so it travels over the wire as is and
prints as JSON.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import random
import sys
import time
from typing import Any

from pyzdb.version import __version__

#: Values measured to estimate the tree's memory: `info` runs in the server's loop and must
#: answer in milliseconds even for a tree of millions of values.
SIZE_SAMPLE_NODES = 20_000


class RequestStats:
    """Counts of requests served and refused, and the sessions seen recently (`connected`)."""

    #: A session that sent nothing for this many seconds no longer counts as connected.
    RECENT = 60.0

    def __init__(self) -> None:
        self.started = time.time()
        self.served = 0
        self.refused = 0
        self.failed = 0
        self._seen: dict[bytes, float] = {}

    def record(self, session: bytes, outcome: str) -> None:
        """One request answered: `outcome` is "ok", "refused" (sandbox, budget, bad input) or
        "failed" (the query's own exception)."""
        self.served += 1
        if outcome == "refused":
            self.refused += 1
        elif outcome == "failed":
            self.failed += 1
        if session:
            now = time.monotonic()
            self._seen[session] = now
            if len(self._seen) > 4096:
                self._forget(now)

    def _forget(self, now: float) -> None:
        for session, seen in list(self._seen.items()):
            if now - seen > self.RECENT:
                del self._seen[session]

    def section(self) -> dict[str, Any]:
        self._forget(time.monotonic())
        return {
            "connected": len(self._seen),
            "requests_served": self.served,
            "requests_refused": self.refused,
            "requests_failed": self.failed,
        }


def engine_sections(engine: Any, role: str, started: float) -> dict[str, dict[str, Any]]:
    """What any engine can say about itself, as sections: server, journal, tree, budgets."""
    journal = engine.journal
    directory = os.path.abspath(engine.directory)
    journal_bytes, checkpoint_bytes, checkpoint_seq = _files(directory)
    keys, approx = tree_size(engine.store.root)
    budget = engine.config.budget
    return {
        "server": {
            "version": __version__,
            "python": platform.python_version(),
            "role": role,
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - started, 3),
            "data_directory": directory,
            # False once a journal write or fsync failed: reads go on, writes are refused
            # until the directory is opened again (`write_refusal` says why).
            "writable": journal.failure is None,
            "write_refusal": journal.failure,
        },
        "journal": {
            "last_seq": journal.last_seq,
            "durable_seq": journal.durable_seq,
            "fsync": engine.config.fsync,
            "journal_bytes": journal_bytes,
            "checkpoint_seq": checkpoint_seq,
            "checkpoint_bytes": checkpoint_bytes,
            "in_transaction": engine.in_transaction,
        },
        "tree": {"top_level_keys": keys, "approx_bytes": approx},
        "budgets": {
            field.name: getattr(budget, field.name) for field in dataclasses.fields(budget)
        },
    }


def _files(directory: str) -> tuple[int, int, int | None]:
    """Bytes of the journal segments, bytes and seq of the newest checkpoint."""
    journal_bytes = 0
    newest: tuple[int, int] | None = None
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0, 0, None
    for entry in entries:
        name = entry.name
        try:
            if name.startswith("journal-") and name.endswith(".log"):
                journal_bytes += entry.stat().st_size
            elif name.startswith("checkpoint-") and name.endswith(".ckpt"):
                seq = int(name[len("checkpoint-") : -len(".ckpt")])
                if newest is None or seq > newest[0]:
                    newest = (seq, entry.stat().st_size)
        except (OSError, ValueError):
            continue
    if newest is None:
        return journal_bytes, 0, None
    return journal_bytes, newest[1], newest[0]


def tree_size(root: dict[Any, Any]) -> tuple[int, int]:
    """(top-level keys, approximate bytes of the tree), by `sys.getsizeof` on a sample.

    Each container is measured from at most `SAMPLE_WIDTH` of its items drawn at random
    positions, scaled by its length; after `SIZE_SAMPLE_NODES` measurements
    the rest count their own size only. So `info` answers in milliseconds on any tree, and
    the figure is right within the spread of the items' sizes.
    """
    budget = [SIZE_SAMPLE_NODES]
    return len(root), int(_estimate(root, budget))


#: Items of one container measured to estimate it.
SAMPLE_WIDTH = 32


def _estimate(value: Any, budget: list[int]) -> float:
    size = float(sys.getsizeof(value))
    budget[0] -= 1
    if budget[0] <= 0:
        return size
    if isinstance(value, dict):
        if value:
            keys = _sample(list(value) if len(value) > SAMPLE_WIDTH else value)
            part = sum(_estimate(key, budget) + _estimate(value[key], budget) for key in keys)
            size += part * len(value) / len(keys)
    elif isinstance(value, (list, tuple)):
        if value:
            items = _sample(value)
            size += sum(_estimate(item, budget) for item in items) * len(value) / len(items)
    return size


def _sample(items: Any) -> list[Any]:
    """At most `SAMPLE_WIDTH` items, at positions drawn by a generator seeded with the length
    (the same answer twice; no stride to alias with a periodic pattern in the data)."""
    n = len(items)
    if n <= SAMPLE_WIDTH:
        return list(items)
    return [items[i] for i in random.Random(n).sample(range(n), SAMPLE_WIDTH)]


def format_info(sections: dict[str, dict[str, Any]]) -> str:
    """The sections as Redis prints INFO: `# section` then `name: value` lines."""
    lines: list[str] = []
    for name, fields in sections.items():
        if lines:
            lines.append("")
        lines.append(f"# {name}")
        lines.extend(f"{key}: {value}" for key, value in fields.items())
    return "\n".join(lines)


__all__ = ["RequestStats", "engine_sections", "tree_size", "format_info", "SIZE_SAMPLE_NODES"]
