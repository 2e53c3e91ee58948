"""The ops of an authenticated key: units labelled with the key, scoped keys kept in their subtree.

`Dispatcher.run` sends every request of a keyed connection here (after `ServerAuth.admit` checked
its role). An unscoped key runs the server's own ops, except that the units it commits are
labelled `[key NAME] ...`, so the history says who did what and scoped undo can tell its own
units from others'. A scoped key's request is changed on every route out of its subtree:

- query / execute: `db` is bound to the subtree (`pyzdb.scope`), under the scoped budget.
- history: only this key's own units, without the tag.
- undo / redo: only this key's own last unit, and only while it is the newest unit (stricter
  than needed: any later unit of another key refuses it, whatever subtree it touched).
- blob: only a File stored under the subtree; a digest stored elsewhere (or nowhere) gets the
  same answer, so the reply tells nothing about other tenants.
- lock: held at most one lease in all; heartbeats do not extend it (the hold cap of
  `LockQueue.take`, the same deadline as `--lock-max-hold`).
- errors: messages and notes spell paths from the scope (`db['x']`), not from the root.
- watch: the path is taken from the scope; the reply's effects are spelled from the scope,
  and an effect on a container above the scope becomes a ``put`` of the scope's new value
  (`scoped_records`), so neither siblings' values nor their keys reach the watcher.
- info: only the server's version, this key's role and scope, and its subtree's size.
- ping, rollback, checkpoint (admin): as for anyone. Any other op (replication, ops added
  later) is refused to a scoped key until it is confined here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from pyzdb.api.changes import MISSING, lookup, relevant
from pyzdb.changefeed import unfreeze, value_at
from pyzdb.errors import Error, ProtocolError, SecurityError
from pyzdb.info import tree_size
from pyzdb.net.messages import Request
from pyzdb.scope import resolve
from pyzdb.server.auth import Grant
from pyzdb.values import File, describe
from pyzdb.version import __version__

if TYPE_CHECKING:
    from pyzdb.server.loop import Server


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
            return self.server.ops[op](request, params)
        try:
            return self._scoped(op)(grant, request, params)
        except Exception as exc:
            raise _relative(exc, grant.scope) from None

    def _scoped(self, op: str) -> Callable[[Grant, Request, dict[str, Any]], Any]:
        table: dict[str, Callable[[Grant, Request, dict[str, Any]], Any]] = {
            "query": self._evaluate,
            "execute": self._evaluate,
            "unlock": lambda grant, request, params: self._commit(grant, request),
            "commit": lambda grant, request, params: self._commit(grant, request),
            "history": lambda grant, request, params: self._history(grant),
            "undo": lambda grant, request, params: self._step(grant, "undo"),
            "redo": lambda grant, request, params: self._step(grant, "redo"),
            "blob": lambda grant, request, params: self._blob(grant, request.source),
            "lock": self._lock,
            "begin": self._lock,
            "watch": self._watch,
            "info": lambda grant, request, params: self._info(grant),
        }
        found = table.get(op)
        if found is not None:
            return found
        if op in ("ping", "rollback", "checkpoint"):
            return lambda grant, request, params: self.server.ops[op](request, params)
        return self._refuse

    # -- the ops -------------------------------------------------------------------------------

    def _evaluate(self, grant: Grant, request: Request, params: dict[str, Any]) -> Any:
        server = self.server
        write = request.op == "execute"
        return server.engine.run(
            request.source,
            write=write,
            syntax=request.syntax,
            params=params,
            root=request.root,
            sync=False,
            finish=server.engine_ops.encode,
            scope=grant.scope,
            budget=grant.budget,
            label=grant.tag + request.source,
        )

    def _commit(self, grant: Grant, request: Request) -> None:
        self.server.locks.commit(request, grant.tag + "transaction")

    def _lock(self, grant: Grant, request: Request, params: dict[str, Any]) -> float:
        return self.server.locks.take(
            request, cap=self.server.config.lease, limit="the one lease of a scoped key"
        )

    def _history(self, grant: Grant) -> list[dict[str, Any]]:
        tag = grant.tag
        return [
            dict(unit, label=unit["label"][len(tag) :])
            for unit in self.server.engine.history()
            if unit["label"].startswith(tag)
        ]

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

    def _watch(self, grant: Grant, request: Request, params: dict[str, Any]) -> Any:
        """The server's watch of scope + path, with the reply spelled from the scope."""
        scope = grant.scope
        assert scope is not None
        path = params.get("path")
        if type(path) not in (list, tuple):
            raise ProtocolError(
                "watch needs params path (a list of keys) and since (None or a seq >= 0)"
            )
        path = cast("list[Any] | tuple[Any, ...]", path)  # its type checked above
        reply = self.server.ops["watch"](request, dict(params, path=[*scope, *path]))
        reply["records"] = scoped_records(self.server.engine.journal, scope, reply["records"])
        return reply

    def _info(self, grant: Grant) -> dict[str, dict[str, Any]]:
        """`info` for a scoped key: nothing global, only its own subtree's size."""
        assert grant.scope is not None
        try:
            keys, approx = tree_size(resolve(self.server.engine.store.root, grant.scope))
            exists = True
        except SecurityError:
            keys, approx, exists = 0, 0, False
        return {
            "server": {"version": __version__},
            "key": {
                "name": grant.entry.name,
                "role": grant.entry.role,
                "scope": grant.entry.scope_text,
            },
            "tree": {"exists": exists, "top_level_keys": keys, "approx_bytes": approx},
        }

    def _refuse(self, grant: Grant, request: Request, params: dict[str, Any]) -> Any:
        raise SecurityError(f"the {request.op} request is not available to a scoped key")


def scoped_records(journal: Any, scope: tuple[Any, ...], records: list[Any]) -> list[Any]:
    """A watch reply's ``[seq, effects]`` records (for a path under `scope`) spelled from it.

    An effect at or below the scope loses the scope's prefix. An effect on a container above
    it is either about a sibling (dropped: even its keys stay on the server) or changes what
    the scope's path names; that becomes ``("put", (), exists, value)``, the scope's new value
    (`changes.Shadow` applies it as the watched value changing). Most such effects carry the
    new value (set, del, clear, a splice of the same length); one that moves list items above
    the scope does not, so the scope's value at the end of that record is rebuilt from the
    journal and the record's later effects (already in it) are skipped.
    """
    depth = len(scope)
    found = []
    for seq, effects in records:
        out: list[Any] = []
        for effect in effects:
            where = tuple(effect[1])
            if len(where) >= depth:
                out.append([effect[0], list(where[depth:]), *effect[2:]])
                continue
            put = _above(effect, scope, len(where))
            if put is _MOVED:  # the whole tree as of seq (a Shadow of the scope would refuse)
                value = lookup(value_at(journal, (), seq).get(), scope)
                out.append(_put(None, False) if value is MISSING else _put(unfreeze(value)))
                break
            if put is not None:
                out.append(put)
        if out:
            found.append([seq, out])
    return found


#: `_above`'s answer for an effect that moved the list items above the scope.
_MOVED: Any = object()


def _put(value: Any, exists: bool = True) -> list[Any]:
    exists = exists and isinstance(value, dict)  # a scope that is not a dict has no `db`
    return ["put", [], exists, value if exists else None]


def _above(effect: Any, scope: tuple[Any, ...], level: int) -> Any:
    """What an effect on the container at `scope[:level]` does to the scope: a put, None
    (nothing) or `_MOVED`."""
    op, step, rest = effect[0], scope[level], scope[level + 1 :]
    if not relevant(effect, scope):
        return None

    def same(key: Any) -> bool:
        return key == step and type(key) is type(step)

    if op in ("set", "dins"):
        key, value = (effect[3], effect[4]) if op == "dins" else (effect[2], effect[3])
        return _put(_lookup(value, rest)) if same(key) else None
    if op == "del":
        if same(effect[2]):
            return _put(None, False)
        moved = isinstance(step, int) and isinstance(effect[2], int) and effect[2] < step
        return _MOVED if moved else None
    if op == "clear":
        return _put(None, False)
    if op == "order":
        return None
    if op == "ins":
        return _MOVED if isinstance(step, int) and effect[2] <= step else None
    if op == "splice":
        start, stop, items = effect[2], effect[3], effect[4]
        if not isinstance(step, int) or step < start:
            return None
        if len(items) == stop - start:
            return _put(_lookup(items[step - start], rest)) if step < stop else None
        return _MOVED
    if op == "perm":
        return _MOVED if isinstance(step, int) else None
    return _MOVED


def _lookup(value: Any, keys: tuple[Any, ...]) -> Any:
    for key in keys:
        if not isinstance(value, (dict, list)):
            return None
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


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
