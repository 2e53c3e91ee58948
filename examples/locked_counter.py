"""A locked read-modify-write: several workers increment one counter and lose no update.

    python examples/locked_counter.py                        # embedded, threads share the db
    python examples/locked_counter.py tcp://127.0.0.1:5559   # one connection per worker
    python examples/locked_counter.py ./pyzdb-data           # embedded, in that directory

Each increment reads the counter, computes in the client, then writes it back: two requests
another worker could slip between. `with db.transaction():` makes the pair exclusive (the
server queues everyone else) and commits it as one unit; an exception inside the block rolls
it back. When the computation fits in the query language, `db.execute("db['c'] += 1")` is the
one-request way: every request is atomic by itself.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
from collections.abc import Callable

import pyzdb
from pyzdb.api.proxy import DatabaseAPI

WORKERS = 4
INCREMENTS = 25


def databases(where: str | None, stack: contextlib.ExitStack) -> Callable[[], DatabaseAPI]:
    """A factory of database handles for the workers.

    Remote: a new connection per call (separate clients, as separate processes would be).
    Embedded: one data directory opens in one process only, so every call returns the same
    `Database`, which threads may share.
    """
    if where and "://" in where:
        return lambda: stack.enter_context(pyzdb.connect(where))
    if where is None:
        where = stack.enter_context(tempfile.TemporaryDirectory(prefix="pyzdb-counter-"))
    shared = stack.enter_context(pyzdb.open(where))
    return lambda: shared


def worker(db: DatabaseAPI) -> None:
    for _ in range(INCREMENTS):
        with db.transaction():
            count = db["counter"].get()  # read ...
            db["counter"] = count + 1  # ... and write, with nobody in between


def main(where: str | None = None) -> None:
    with contextlib.ExitStack() as stack:
        new_db = databases(where, stack)
        db = new_db()
        db["counter"] = 0
        handles = [new_db() for _ in range(WORKERS)]
        threads = [threading.Thread(target=worker, args=(handle,)) for handle in handles]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(
            f"counter = {db['counter'].get()} "
            f"({WORKERS} workers x {INCREMENTS} locked increments, none lost)"
        )

        try:
            with db.transaction():
                db["counter"] = -1
                raise RuntimeError("changed my mind")
        except RuntimeError as error:
            print(
                f"a transaction that raised ({error}) is rolled back: "
                f"counter = {db['counter'].get()}"
            )

        print("one request, atomic by itself:", db.execute("db['counter'] += 1\ndb['counter']"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
