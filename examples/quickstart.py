"""Quick start: store nested data, query it with a comprehension, undo a write, checkpoint.

    python examples/quickstart.py                        # embedded, in a fresh temp directory
    python examples/quickstart.py ./pyzdb-data           # embedded, in that data directory
    python examples/quickstart.py tcp://127.0.0.1:5559   # a running pyzdb-server

The comprehension runs next to the data: one request, and only the names travel back.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile

import pyzdb
from pyzdb.api.proxy import DatabaseAPI


def open_database(where: str | None, stack: contextlib.ExitStack) -> DatabaseAPI:
    """A server URI (it has `://`), a data directory, or a temp directory removed at the end."""
    if where and "://" in where:
        return stack.enter_context(pyzdb.connect(where))
    if where is None:
        where = stack.enter_context(tempfile.TemporaryDirectory(prefix="pyzdb-quickstart-"))
    return stack.enter_context(pyzdb.open(where))


def main(where: str | None = None) -> None:
    with contextlib.ExitStack() as stack:
        db = open_database(where, stack)
        db["users"] = [
            {"name": "ada", "age": 36},
            {"name": "alan", "age": 41},
            {"name": "grace", "age": 85},
        ]
        db["users"].append({"name": "linus", "age": 28})
        print("users:", len(db["users"]))

        over_40 = db.query("[u['name'] for u in db['users'] if u['age'] > 40]")
        print("over 40:", over_40)

        db["users"][0]["age"] += 1  # one request: `db['users'][0]['age'] += 1` on the server
        print("ada is now", db["users"][0]["age"].get())
        print("undo:", db.undo())
        print("ada is back to", db["users"][0]["age"].get())

        db.checkpoint()  # the whole tree to a new file; the journal it covers is dropped
        print("checkpoint written; the tree is", db.get())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
