"""The asyncio client: concurrent queries from one connection, an awaited path proxy, a lock.

    python examples/asyncio_client.py tcp://127.0.0.1:5559   # a running pyzdb-server
    python examples/asyncio_client.py                        # starts its own, then stops it

With no URI it starts `pyzdb-server` on an `ipc://` socket in a temp directory (data there
too), waits for the first answer, and stops it with SIGTERM at the end.

Every request is a coroutine. `asyncio.gather` puts several in flight at once; the connection
sends them one at a time, and the event loop is free meanwhile. Python's `db[k] = v`, `len()`
and `in` cannot await, so the async proxy spells them `set`, `len` and `contains`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyzdb.aio

#: Seconds to wait for the server this script starts, and for it to stop.
START_TIMEOUT = 20.0


def server_script() -> str:
    """`pyzdb-server` beside this interpreter (its virtualenv), else the first on PATH."""
    beside = Path(sys.executable).with_name("pyzdb-server")
    found = str(beside) if beside.exists() else shutil.which("pyzdb-server")
    if found is None:
        raise SystemExit("pyzdb-server is not installed: pip install pyzdb")
    return found


@contextlib.contextmanager
def own_server() -> Iterator[str]:
    """A pyzdb-server for the length of the block, on ipc:// in a temp dir; yields its URI."""
    with tempfile.TemporaryDirectory(prefix="pyzdb-aio-") as scratch:
        uri = f"ipc://{scratch}/server.sock"
        # The log goes to a file: a pipe nobody reads would block the server once full.
        with open(Path(scratch) / "server.log", "wb") as log:
            server = subprocess.Popen(
                [server_script(), "--data", str(Path(scratch) / "data"), "--bind", uri],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:
            yield uri
        finally:
            server.terminate()
            try:
                server.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


async def demo(uri: str, timeout: float) -> None:
    db = pyzdb.aio.connect(uri, timeout=timeout)
    async with db:
        await db.ping()  # the first answer: the server is up
        await db["l"].set(list(range(10)))
        await db["l"].append(10)

        odd_squares, total, length = await asyncio.gather(
            db.query("[v*v for v in db['l'] if v % 2]"),
            db.query("sum(db['l'])"),
            db["l"].len(),
        )
        print("odd squares:", odd_squares)
        print("sum:", total, "length:", length)

        await db.execute("db['hits'] = 0")
        await asyncio.gather(*(db.execute("db['hits'] += 1") for _ in range(20)))
        print("hits after 20 concurrent increments:", await db["hits"].get())

        async with db.transaction():  # exclusive, one unit of undo
            hits = await db["hits"].get()
            await db["hits"].set(hits * 10)
        print("hits after the transaction:", await db["hits"].get())
        print("undo:", await db.undo())
        print("hits after undo:", await db["hits"].get())


def main(uri: str | None = None) -> None:
    if uri is not None:
        asyncio.run(demo(uri, timeout=5.0))
        return
    with own_server() as own_uri:
        # The first request also waits for the server to start listening.
        asyncio.run(demo(own_uri, timeout=START_TIMEOUT))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
