"""The change feed's data side: `Change`, watch paths, and turning journal effects into changes.

A watcher holds a *shadow*: the value under the watched path as of the last seq it saw, in
plain values. Each journal effect that touches the path (see `relevant`) is applied to the
shadow by `Shadow.apply`, which returns the `Change`s it made, with the old value taken from
the shadow before the effect and the new value after it. The same code runs in three places:
the client (`db.watch` over the network), the embedded database, and the server, which
rebuilds a shadow as of an older seq from a checkpoint when a watch resumes there.

Effects are the store's (`store.py`): ``("set", path, key, v)``, ``("del", path, key)``,
``("ins", path, i, v)``, ``("dins", path, pos, key, v)``, ``("splice", path, start, stop,
[v...])``, ``("perm", path, [old index...])``, ``("order", path, [key...])``,
``("clear", path)``; a scoped key's watch also gets ``("put", (), exists, value)``: its whole
subtree was replaced from above (`pyzdb.server.tenancy.scoped_records`). A key-level effect becomes
one change at ``path + (key,)`` with op ``insert`` (no old value), ``set`` or ``delete`` (no
new value); a whole-container rewrite (splice, perm, order, clear) becomes one ``replace``
change at the container's path.

This module imports neither the sandbox nor any socket code: the client uses it.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from pyzdb.errors import Error

#: Change ops: the first value a watch sees, then what one effect did.
CHANGE_OPS = ("initial", "insert", "set", "delete", "replace")

#: What `lookup` returns for a path with no value (None is a value).
MISSING: Any = object()
_MISSING = MISSING


@dataclass(frozen=True)
class Change:
    """One change under a watched path.

    `seq` is the journal record that made it (every change of one record shares it); `path` the
    keys from the root to what changed; `old`/`new` the value before and after (None where
    there is none: an inserted key's `old`, a deleted key's `new`).
    """

    seq: int
    path: tuple[Any, ...]
    op: str
    old: Any
    new: Any


def parse_path(path: Any) -> tuple[Any, ...]:
    """The keys of a watch path: ``"db['orders'][3]"``, a tuple/list of keys, or a path proxy.

    A string is parsed (never evaluated): only ``db`` followed by subscripts of literal keys is
    accepted, so nothing but data crosses to the server.

    >>> parse_path("db['orders'][3]"), parse_path(["orders", 3])
    (('orders', 3), ('orders', 3))
    """
    keys = getattr(path, "_path", None)
    if keys is not None:
        return tuple(keys)
    if isinstance(path, (tuple, list)):
        return tuple(path)
    if not isinstance(path, str):
        raise TypeError(
            f"a watch path is a string like \"db['orders']\" or a tuple of keys, "
            f"not {type(path).__name__}"
        )
    try:
        node = ast.parse(path.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"bad watch path {path!r}: {exc.msg}") from None
    found: list[Any] = []
    while isinstance(node, ast.Subscript):
        try:
            found.append(ast.literal_eval(node.slice))
        except ValueError:
            raise ValueError(f"bad watch path {path!r}: keys must be literals") from None
        node = node.value
    if not (isinstance(node, ast.Name) and node.id == "db"):
        raise ValueError(f"bad watch path {path!r}: write it as db[key][key]...")
    return tuple(reversed(found))


def relevant(effect: tuple[Any, ...], watched: tuple[Any, ...]) -> bool:
    """Whether `effect` may change the value under `watched` (one path is a prefix of the other).

    Cheap on purpose: the server filters every record of a feed through it.
    """
    where = effect[1]
    n = min(len(where), len(watched))
    return tuple(where[:n]) == watched[:n]


def lookup(value: Any, keys: Iterable[Any]) -> Any:
    """The value under `keys` inside `value`, or `_MISSING`."""
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return value


def _out(value: Any) -> Any:
    """A change's old/new value: the caller's own copy; None for a missing value."""
    if value is _MISSING:
        return None
    return copy.deepcopy(value) if isinstance(value, (dict, list, tuple)) else value


class Shadow:
    """The value under one watched path, kept current by applying effects to it."""

    def __init__(self, watched: tuple[Any, ...], value: Any = _MISSING) -> None:
        self.watched = tuple(watched)
        self.value = value

    @classmethod
    def of(cls, watched: tuple[Any, ...], exists: bool, value: Any) -> Shadow:
        """A shadow from what the server sends: the value, and whether there was one."""
        return cls(watched, value if exists else _MISSING)

    @property
    def exists(self) -> bool:
        return self.value is not _MISSING

    def get(self) -> Any:
        """The current value (None when there is none)."""
        return None if self.value is _MISSING else self.value

    def apply(self, seq: int, effect: tuple[Any, ...]) -> list[Change]:
        """Apply one effect; return the changes it made under the watched path, in order.

        The shadow keeps the values an effect carries and changes them with later effects:
        give it effects nobody else holds (`pyzdb.changefeed.value_at` copies the journal's)."""
        where = tuple(effect[1])
        if effect[0] == "put":  # a scoped watch: the whole tree (the scope) became effect[3]
            return self._become(seq, lookup(effect[3], self.watched) if effect[2] else _MISSING)
        n = len(self.watched)
        if len(where) >= n and where[:n] == self.watched:
            return self._inside(seq, effect, where)
        if len(where) < n and self.watched[: len(where)] == where:
            return self._above(seq, effect, where)
        return []

    # -- an effect on the watched value or below it -----------------------------------------

    def _inside(self, seq: int, effect: tuple[Any, ...], where: tuple[Any, ...]) -> list[Change]:
        op = effect[0]
        node = lookup(self.value, where[len(self.watched) :])
        if node is _MISSING or not isinstance(node, (dict, list)):
            raise Error(
                f"change feed out of step: no container at {where!r} for a {op!r} "
                f"effect of seq {seq}"
            )
        if op in ("set", "del", "ins", "dins"):
            key = effect[3] if op == "dins" else effect[2]
            if isinstance(node, dict):
                old = node.get(key, _MISSING)
            elif op == "ins":
                old = _MISSING
            else:
                old = node[key] if -len(node) <= key < len(node) else _MISSING
            if op == "del":
                del node[key]
                return [Change(seq, where + (key,), "delete", _out(old), None)]
            value = effect[4] if op == "dins" else effect[3]
            if op == "ins":
                cast(list[Any], node).insert(key, value)  # "ins" is a list's effect
            elif op == "dins" and isinstance(node, dict):
                items = list(node.items())
                node.clear()
                node.update(items[: effect[2]])
                node[key] = value
                node.update(items[effect[2] :])
            else:
                node[key] = value
            kind = "insert" if old is _MISSING else "set"
            return [Change(seq, where + (key,), kind, _out(old), _out(value))]
        old = _out(node)
        if op == "clear":
            node.clear()
        elif op == "order" and isinstance(node, dict):
            items = [(key, node[key]) for key in effect[2]]
            node.clear()
            node.update(items)
        elif op == "splice" and isinstance(node, list):
            node[effect[2] : effect[3]] = list(effect[4])
        elif op == "perm" and isinstance(node, list):
            node[:] = [node[i] for i in effect[2]]
        else:
            raise Error(f"change feed cannot apply a {op!r} effect at {where!r} (seq {seq})")
        return [Change(seq, where, "replace", old, _out(node))]

    # -- an effect on a container above the watched value ------------------------------------

    def _above(self, seq: int, effect: tuple[Any, ...], where: tuple[Any, ...]) -> list[Change]:
        op = effect[0]
        step = self.watched[len(where)]  # the key of the watched branch in that container
        rest = self.watched[len(where) + 1 :]
        if op in ("set", "dins"):
            key, value = (effect[3], effect[4]) if op == "dins" else (effect[2], effect[3])
            if key != step or type(key) is not type(step):
                return []
            return self._become(seq, lookup(value, rest))
        if op == "del":
            if effect[2] == step and type(effect[2]) is type(step):
                return self._become(seq, _MISSING)
            if isinstance(step, int) and isinstance(effect[2], int) and effect[2] < step:
                raise _moved(seq)
            return []
        if op == "clear":
            return self._become(seq, _MISSING)
        if op == "order":
            return []
        if op in ("ins", "splice", "perm"):
            return self._list_above(seq, effect, step, rest)
        raise Error(f"change feed cannot apply a {op!r} effect at {where!r} (seq {seq})")

    def _list_above(
        self, seq: int, effect: tuple[Any, ...], step: Any, rest: tuple[Any, ...]
    ) -> list[Change]:
        """An effect that moves a list's items, on a list above the watched value; `step` is
        the index of the watched branch in it, `rest` the path below that."""
        op = effect[0]
        if op == "ins":
            if isinstance(step, int) and effect[2] <= step:
                raise _moved(seq)
            return []
        if op == "splice":
            start, stop, items = effect[2], effect[3], effect[4]
            if not isinstance(step, int) or step < start:
                return []
            if step < stop and len(items) == stop - start:
                return self._become(seq, lookup(items[step - start], rest))
            if step >= stop and len(items) == stop - start:
                return []
            raise _moved(seq)
        if not isinstance(step, int) or step >= len(effect[2]) or effect[2][step] == step:
            return []  # a permutation ("perm") that leaves the watched item in its place
        raise _moved(seq)

    def _become(self, seq: int, value: Any) -> list[Change]:
        old, self.value = self.value, value
        if old is _MISSING and value is _MISSING:
            return []
        kind = "insert" if old is _MISSING else "delete" if value is _MISSING else "set"
        return [Change(seq, self.watched, kind, _out(old), _out(value))]


def _moved(seq: int) -> Error:
    return Error(
        f"seq {seq} moved the items of a list above the watched path, so the path now "
        "names another item: watch the list itself instead"
    )


__all__ = ["Change", "CHANGE_OPS", "MISSING", "Shadow", "parse_path", "relevant", "lookup"]
