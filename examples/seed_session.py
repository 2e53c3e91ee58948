"""The original pyzdb README's sample session, step by step, through today's API.

    python examples/seed_session.py                        # embedded, in a fresh temp directory
    python examples/seed_session.py tcp://127.0.0.1:5559   # a running (empty) pyzdb-server
    python examples/seed_session.py ./pyzdb-data           # an (empty) data directory

Each step prints the seed's line after `> ` and then what it gives now. The differences are the
fixes: `range(10)` is stored as the list it stands for, strings are plain `str` (no `u''`),
writes print nothing, `db.undo()` says whether there was something to undo, and the
comprehensions run on the server as one request each (the seed fetched the list and filtered
it in the client).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from typing import Any

import pyzdb
from pyzdb.api.proxy import DatabaseAPI


def open_database(where: str | None, stack: contextlib.ExitStack) -> DatabaseAPI:
    """A server URI (it has `://`), a data directory, or a temp directory removed at the end."""
    if where and "://" in where:
        return stack.enter_context(pyzdb.connect(where))
    if where is None:
        where = stack.enter_context(tempfile.TemporaryDirectory(prefix="pyzdb-seed-"))
    return stack.enter_context(pyzdb.open(where))


def step(seed_line: str, value: Any = None) -> None:
    """Print the seed's input line, then the value it gives (nothing for None, as a REPL)."""
    print(">", seed_line)
    if value is not None:
        print(repr(value))


def main(where: str | None = None) -> None:
    with contextlib.ExitStack() as stack:
        db = open_database(where, stack)
        step("db", db.get())
        db["x"] = 3
        step("db['x'] = 3")
        step("db['x']", db["x"].get())
        db["l"] = list(range(10))
        step("db['l'] = range(10)")
        step("db", db.get())
        db["l"][4] = ["a", "b", "c"]
        step("db['l'][4] = ['a', 'b', 'c']")
        step("db.undo()", db.undo())
        step("db", db.get())
        step("db.undo()", db.undo())
        step("db.redo()", db.redo())
        step("db.redo()", db.redo())
        step("db", db.get())
        step("[v for v in db['l'][4]]", db.query("[v for v in db['l'][4]]"))
        step("[k for k in db]", db.query("[k for k in db]"))
        db["l"][4].append("d")
        step("db['l'][4].append('d')")
        db.save()
        step("db.save()")

        print("# the application part of the README")
        x = db["x"]._run()
        print("x =", x)
        odd_squares = db.query("[v*v for v in db['l'] if isinstance(v, int) and v % 2]")
        print("odd_squares =", odd_squares)

        print("# the `lock` example: a read-modify-write nobody can interleave with")
        db.lock()
        x = db["x"]._run()
        db["x"] = x + 1
        db.unlock()
        print("x =", db["x"].get())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
