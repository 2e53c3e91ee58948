"""`pyzdb-recover`: check a data directory, and cut its journal at a record, after a backup.

Like `redis-check-aof --fix`, for the one case recovery refuses to decide alone: a journal
record it cannot apply (or a corrupt record with valid ones after it). Starting without that
record silently would lose it and every later write that may depend on it, so the server
stops and names it; the operator runs

    pyzdb-recover DIR                 # try recovery, say what is wrong and where
    pyzdb-recover DIR --until SEQ     # keep records before SEQ, drop SEQ and everything after

`--until` first copies the whole directory to ``DIR.before-recover-<time>`` (never silently:
it prints what it drops and where the copy is), then truncates the segment holding SEQ at
that record's offset and removes later segments and any checkpoint covering a dropped record.
The server must not be running (the directory's flock is taken for the duration).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import sys
import time
from collections.abc import Sequence

from pyzdb.errors import Error
from pyzdb.storage.format import CHECKPOINT_NAME as _CHECKPOINT_NAME
from pyzdb.storage.format import list_segments as segments
from pyzdb.storage.scan import frames, locate


def cut(directory: str, until: int) -> tuple[str, int]:
    """Back the directory up, then drop record `until` and every later one.

    Returns (the backup's path, how many records were dropped).
    """
    lock = os.open(os.path.join(directory, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Error(f"{directory} is in use: stop the server first") from None
        where = locate(directory, until)
        if where is None:
            raise Error(f"no journal record with seq {until} in {directory}")
        backup = f"{os.path.normpath(directory)}.before-recover-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.copytree(directory, backup, ignore=shutil.ignore_patterns("LOCK"))
        dropped = 0
        for first, path in segments(directory):
            if os.path.basename(path) == where[0]:
                dropped += sum(1 for seq, _ in frames(path) if seq >= until)
                with open(path, "r+b") as handle:
                    handle.truncate(where[1])
                    os.fsync(handle.fileno())
            elif first > until:
                dropped += sum(1 for _ in frames(path))
                os.unlink(path)
        for name in os.listdir(directory):
            match = _CHECKPOINT_NAME.fullmatch(name)
            if match and int(match.group(1)) >= until:
                os.unlink(os.path.join(directory, name))
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return backup, dropped
    finally:
        os.close(lock)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pyzdb-recover`: 0 if the directory recovers (after a cut), else 1/2."""
    parser = argparse.ArgumentParser(
        prog="pyzdb-recover",
        description="Check that a pyzdb data directory recovers; with --until, cut its "
        "journal at a record after copying the directory.",
    )
    parser.add_argument("data", metavar="DIR", help="the data directory (server stopped)")
    parser.add_argument(
        "--until",
        type=int,
        metavar="SEQ",
        help="drop journal record SEQ and every later one (a backup copy of DIR is made first)",
    )
    args = parser.parse_args(argv)
    if not os.path.isdir(args.data):
        print(f"pyzdb-recover: {args.data} is not a directory", file=sys.stderr)
        return 2
    from pyzdb.engine import Engine

    if args.until is not None:
        if args.until < 1:
            print("pyzdb-recover: --until takes a seq >= 1", file=sys.stderr)
            return 2
        try:
            backup, dropped = cut(args.data, args.until)
        except (Error, OSError) as exc:
            print(f"pyzdb-recover: {exc}", file=sys.stderr)
            return 1
        print(
            f"copied {args.data} to {backup}; dropped {dropped} journal record(s) from seq "
            f"{args.until} on"
        )
    try:
        engine = Engine(args.data)
    except (Error, OSError) as exc:
        print(f"pyzdb-recover: {exc}", file=sys.stderr)
        return 1
    last = engine.last_seq
    engine.close()
    print(f"{args.data} recovers: journal up to seq {last}")
    return 0


__all__ = ["main", "locate", "cut", "segments", "frames"]
