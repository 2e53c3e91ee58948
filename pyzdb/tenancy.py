"""The ops of an authenticated key: units labelled with the key, scoped keys kept in their subtree.

`Server._run` sends every request of a keyed connection here (after `ServerAuth.admit` checked
its role). An unscoped key runs the server's own ops, except that the units it commits are
labelled `[key NAME] ...`, so the history says who did what and scoped undo can tell its own
units from others'. A scoped key's request is changed on every route out of its subtree:

- query / execute: `db` is bound to the subtree (`pyzdb.scope`), under the scoped budget.
- history: only this key's own units, without the tag.
- undo / redo: only this key's own last unit, and only while it is the newest unit (stricter
  than needed: any later unit of another key refuses it, whatever subtree it touched).
- blob: only a File stored under the subtree; a digest stored elsewhere (or nowhere) gets the
  same answer, so the reply tells nothing about other tenants.
- lock: held at most one lease in all; heartbeats do not extend it (`Server._hold_until`).
- errors: messages and notes spell paths from the scope (`db['x']`), not from the root.
- ping, rollback, checkpoint (admin): as for anyone. Any other op (`info`, `watch`,
  replication, ops added later) is refused to a scoped key until it is confined here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .auth import Grant
from .errors import Error, SecurityError
from .protocol import Request
from .scope import resolve
from .values import File, describe

if TYPE_CHECKING:
    from .server import Server


class Tenancy:
    """Keyed versions of the server's ops (one per server)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def run(self, grant: Grant, request: Request, params: dict[str, Any]) -> Any:
        """Run `request` for `grant`'s key; scoped errors are rewritten relative to the scope."""
        op = request.op
        if grant.scope is None:
            if op in ("query", "execute"):
                return self._evaluate(grant, request, params)
            if op in ("unlock", "commit"):
                return self._commit(grant, request)
            return self.server._ops[op](request, params)
        try:
            return self._scoped(op)(grant, request, params)
        except Exception as exc:
            raise _relative(exc, grant.scope) from None

    def _scoped(self, op: str) -> Callable[[Grant, Request, dict[str, Any]], Any]:
        table: dict[str, Callable[[Grant, Request, dict[str, Any]], Any]] = {
            "query": self._evaluate, "execute": self._evaluate,
            "unlock": lambda grant, request, params: self._commit(grant, request),
            "commit": lambda grant, request, params: self._commit(grant, request),
            "history": lambda grant, request, params: self._history(grant),
            "undo": lambda grant, request, params: self._step(grant, "undo"),
            "redo": lambda grant, request, params: self._step(grant, "redo"),
            "blob": lambda grant, request, params: self._blob(grant, request.source),
            "lock": self._lock, "begin": self._lock,
        }
        found = table.get(op)
        if found is not None:
            return found
        if op in ("ping", "rollback", "checkpoint"):
            return lambda grant, request, params: self.server._ops[op](request, params)
        return self._refuse

    # -- the ops -------------------------------------------------------------------------------

    def _evaluate(self, grant: Grant, request: Request, params: dict[str, Any]) -> Any:
        server = self.server
        write = request.op == "execute"
        return server.engine.run(
            request.source, write=write, syntax=request.syntax, params=params,
            root=request.root, sync=False, finish=server._encode, scope=grant.scope,
            budget=grant.budget, label=grant.tag + request.source,
        )

    def _commit(self, grant: Grant, request: Request) -> None:
        server = self.server
        server._check_holder(request)
        try:
            server.engine.commit(grant.tag + "transaction", sync=False)
        finally:
            server._release()

    def _lock(self, grant: Grant, request: Request, params: dict[str, Any]) -> float:
        server = self.server
        lease = server._op_lock(request, params)
        server._hold_until = time.monotonic() + server.config.lease
        return lease

    def _history(self, grant: Grant) -> list[dict[str, Any]]:
        tag = grant.tag
        return [dict(unit, label=unit["label"][len(tag):])
                for unit in self.server.engine.history() if unit["label"].startswith(tag)]

    def _step(self, grant: Grant, kind: str) -> bool:
        """Undo/redo the newest unit if it is this key's own; else refuse (or False: none)."""
        engine = self.server.engine
        units = [unit for unit in engine.history() if unit["undone"] == (kind == "redo")]
        if not any(unit["label"].startswith(grant.tag) for unit in units):
            return False
        newest = units[-1] if kind == "undo" else units[0]
        if not newest["label"].startswith(grant.tag):
            raise SecurityError(
                f"cannot {kind}: another key's unit came after this key's last one, and a "
                f"scoped key may {kind} only its own newest unit"
            )
        return engine.undo(sync=False) if kind == "undo" else engine.redo(sync=False)

    def _blob(self, grant: Grant, digest: str) -> bytes:
        engine = self.server.engine
        assert grant.scope is not None
        try:
            root = resolve(engine.store.root, grant.scope)
        except SecurityError:
            root = {}
        if not _holds_file(root, digest):
            raise Error("no File with that digest is stored in this key's scope")
        return engine.read_blob(digest)

    def _refuse(self, grant: Grant, request: Request, params: dict[str, Any]) -> Any:
        raise SecurityError(f"the {request.op} request is not available to a scoped key")


def _holds_file(node: Any, digest: str) -> bool:
    """Is a File with `digest` stored anywhere under `node` (an iterative walk, any depth)?"""
    stack = [node]
    while stack:
        item = stack.pop()
        if type(item) is File:
            if item.digest == digest:
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def _relative(exc: Exception, scope: tuple[Any, ...]) -> Exception:
    """`exc` with paths spelled from the scope: `db['tenants']['acme']['x']` -> `db['x']`."""
    prefix = describe(scope)

    def fix(text: Any) -> Any:
        return text.replace(prefix, "db") if isinstance(text, str) else text

    exc.args = tuple(fix(arg) for arg in exc.args)
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [fix(note) for note in notes]
    return exc


__all__ = ["Tenancy"]
