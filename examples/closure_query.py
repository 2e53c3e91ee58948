"""A lambda query whose closure variable travels as a parameter, by value.

    python examples/closure_query.py                        # embedded, in a fresh temp directory
    python examples/closure_query.py tcp://127.0.0.1:5559   # a running pyzdb-server
    python examples/closure_query.py ./pyzdb-data           # embedded, in that data directory

`db.query(lambda db: ...)` ships the lambda's source text, not its bytecode; its first
parameter is bound to the root on the server. The names it uses from around it (here `age`, a
closure cell, and `FIELDS`, a module global) are sent along as parameters, by value. Only data
travels: a free variable that is a function (or a module, an object) is refused in the client,
by name.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile

import pyzdb
from pyzdb.api.proxy import DatabaseAPI

#: A global the query reads: shipped by value with the request.
FIELDS = ("name", "age")


def open_database(where: str | None, stack: contextlib.ExitStack) -> DatabaseAPI:
    """A server URI (it has `://`), a data directory, or a temp directory removed at the end."""
    if where and "://" in where:
        return stack.enter_context(pyzdb.connect(where))
    if where is None:
        where = stack.enter_context(tempfile.TemporaryDirectory(prefix="pyzdb-closure-"))
    return stack.enter_context(pyzdb.open(where))


def older_than(db: DatabaseAPI, age: int) -> list[tuple[str, int]]:
    """The people older than `age`, oldest first: one request, the filter runs on the server."""
    return db.query(
        lambda db: sorted(
            (tuple(u[f] for f in FIELDS) for u in db["users"] if u["age"] > age),
            key=lambda row: -row[1],
        )
    )


def main(where: str | None = None) -> None:
    with contextlib.ExitStack() as stack:
        db = open_database(where, stack)
        db["users"] = [
            {"name": "ada", "age": 36},
            {"name": "alan", "age": 41},
            {"name": "grace", "age": 85},
            {"name": "linus", "age": 28},
        ]
        for age in (30, 40, 80):
            print(f"older than {age}:", older_than(db, age))

        # The same query as a string names its parameters explicitly.
        names = db.query("[u['name'] for u in db['users'] if u['age'] > age]", age=40)
        print("string form, age=40:", names)

        def is_senior(user: dict[str, object]) -> bool:
            return user["age"] >= 65

        try:
            db.query(lambda db: [u["name"] for u in db["users"] if is_senior(u)])
        except pyzdb.Error as error:  # code does not travel: a function is not data
            print(f"refused in the client: {type(error).__name__}: {error}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
