"""The ops a request names, as the dispatcher's table: op name -> handler(request, params).

The engine's own ops (query, execute, undo, ...) and the lock's are built here; `info` is
`pyzdb.server.status`'s, the stream ops are `pyzdb.server.feed.Hub`'s, and a replica replaces
every writing op by a refusal (`pyzdb.server.replica.Follower.refused_ops`). A keyed request
goes through `pyzdb.server.tenancy` first, which calls into this same table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyzdb.codec import Encoded, encode_value, encode_wire, measure
from pyzdb.engine import Engine
from pyzdb.errors import LimitExceeded
from pyzdb.net.messages import Request
from pyzdb.plain import to_plain
from pyzdb.server.lockqueue import LockQueue
from pyzdb.server.sessions import make_tag

#: What an op is: (request, its params) -> the reply's value.
Handler = Callable[[Request, dict[str, Any]], Any]


class EngineOps:
    """The ops that run on the engine and the lock, and the encoding of a query's result."""

    def __init__(self, engine: Engine, locks: LockQueue, max_result: int) -> None:
        self._engine = engine
        self._locks = locks
        self._max_result = max_result

    def table(self) -> dict[str, Handler]:
        """A fresh op table (the server adds the other parts' ops to it)."""
        engine, locks = self._engine, self._locks
        return {
            "query": self.query,
            "execute": self.execute,
            "undo": lambda request, params: engine.undo(sync=False),
            "redo": lambda request, params: engine.redo(sync=False),
            "checkpoint": lambda request, params: engine.checkpoint(),
            "history": lambda request, params: engine.history(),
            "lock": lambda request, params: locks.take(request),
            "begin": lambda request, params: locks.take(request),
            "unlock": lambda request, params: locks.commit(request),
            "commit": lambda request, params: locks.commit(request),
            "rollback": lambda request, params: locks.rollback(request),
            "ping": lambda request, params: None,
            "blob": lambda request, params: engine.read_blob(request.source),
        }

    def query(self, request: Request, params: dict[str, Any]) -> Encoded:
        return self._engine.run(
            request.source,
            write=False,
            syntax=request.syntax,
            params=params,
            root=request.root,
            finish=self.encode,
        )

    def execute(self, request: Request, params: dict[str, Any]) -> Encoded:
        return self._engine.run(
            request.source,
            write=True,
            syntax=request.syntax,
            params=params,
            root=request.root,
            sync=False,
            finish=self.encode,
            tag=make_tag(request),
        )

    def encode(self, value: Any) -> Encoded:
        """The engine's `finish`: encode the result once, inside the unit, within the budget.

        The size is checked *before* encoding, counting every reference to a shared container
        in full as the codec will (`values.measure`): `[[big] * 1000] * 1000` is small in
        memory but would expand to terabytes on the wire. A value of scalars, dicts and lists
        only is then written by msgpack in C (`encode_wire`). A value the codec refuses (a
        generator, a view, a cycle) goes through `to_plain` for the error the embedded database
        raises, naming the type and where it sits.
        """
        found = measure(value, self._max_result)
        if found.size > self._max_result:
            raise LimitExceeded(
                f"query result is larger than the result budget of {self._max_result} bytes",
                "result",
            )
        try:
            data = encode_wire(value, found.native)
        except (TypeError, ValueError):
            data = encode_value(to_plain(value))
        return Encoded(data)


__all__ = ["EngineOps", "Handler"]
