"""The eight primitives: the only code that changes the tree, and what it records.

Each takes ``(container, *args, rec, path)``: `rec` None means do not record (rollback,
replay), `path` None means no effect (a detached container, or not recording). Values are
already adopted. A primitive mutates at C level, appends to ``rec.log`` the undo record -- the
primitive call that reverses it, ``(primitive, container, *args)`` -- and, when the container is
attached, to ``rec.effects`` the effect ``(op, path, *args)`` with frozen values (the journal's
format: see ``README.md``). Containers placed into the tree get their `_parent`/`_key` here.

To give a deleted key back its position, a delete from a small dict records the position
(found in C); a delete from a large one records the dict's key order once per savepoint segment
instead of searching for every key, and undo re-inserts at the end, then restores that order
(the ``order`` effect).
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

from pyzdb.limits import SCALAR_TYPES
from pyzdb.plain import freeze
from pyzdb.storage.raw import dclear, ddel, dget, dset, dupdate, ldel, linsert, lset
from pyzdb.values import File

if TYPE_CHECKING:
    from pyzdb.storage.tracked import TrackedDict, TrackedList

__all__ = [
    "SMALL_DICT",
    "Recorder",
    "dict_clear",
    "dict_fill",
    "dict_ins",
    "dict_order",
    "dict_pop",
    "dict_set",
    "list_perm",
    "list_splice",
]

#: A dict no larger than this records a deleted key's position directly (an O(n) search in C,
#: about 30 ns a key); larger dicts snapshot their key order once per unit segment instead.
SMALL_DICT = 64

#: What the tree holds besides its containers: a value of any other class that a primitive
#: places is a tracked container, and gets its `_parent`/`_key`.
_LEAVES = SCALAR_TYPES | {tuple, File}
_MISSING: Any = object()
_NoneType = type(None)
_EXACT_KEYS = (str, bytes, _NoneType)  # equal keys of these types are the same type and value


class Recorder:
    """The recorder of an open unit (or of an undo/redo being applied)."""

    __slots__ = ("log", "effects", "ordered")

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.effects: list[tuple[Any, ...]] = []
        # ids of dicts whose key order is already recorded in the current savepoint segment
        self.ordered: set[int] = set()


def _frozen(value: Any) -> Any:
    return value if value.__class__ in SCALAR_TYPES else freeze(value)


def dict_set(
    d: TrackedDict, key: Any, value: Any, rec: Recorder | None, path: tuple[Any, ...] | None
) -> None:
    """Store `value` at `key` (a new key goes last)."""
    if rec is not None:
        old = dget(d, key, _MISSING)
        rec.log.append((dict_pop, d, key) if old is _MISSING else (dict_set, d, key, old))
        if path is not None:
            rec.effects.append(("set", path, key, _frozen(value)))
    dset(d, key, value)
    if value.__class__ not in _LEAVES:
        value._parent = d
        value._key = key


class _KeyProbe:
    """Finds the key object a dict actually holds for an equal key (True for 1, 1.0 for 1).

    The dict compares its stored key with the probe; int/float/tuple comparisons return
    NotImplemented for a foreign type, so Python asks the probe, which sees the stored key.
    """

    __slots__ = ("key", "hash", "found")

    def __init__(self, key: Any) -> None:
        self.key = key
        self.hash = hash(key)
        self.found = key

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        if other is self.key or other == self.key:
            self.found = other
            return True
        return False


def _stored_key(d: TrackedDict, key: Any) -> Any:
    if key.__class__ in _EXACT_KEYS:
        return key
    probe = _KeyProbe(key)
    return probe.found if probe in d else key


def dict_pop(d: TrackedDict, key: Any, rec: Recorder | None, path: tuple[Any, ...] | None) -> Any:
    """Delete `key` and return its value; undo puts it back where it was."""
    value = d[key]
    if rec is not None:
        n = len(d)
        last = next(reversed(d))
        if last is key or last == key:
            key, pos = last, None  # re-inserting at the end restores the order
        else:
            key = _stored_key(d, key)
            if n <= SMALL_DICT:
                pos = operator.indexOf(d, key)
            else:
                pos = None
                if id(d) not in rec.ordered:
                    rec.ordered.add(id(d))
                    rec.log.append((dict_order, d, list(d)))
        rec.log.append((dict_ins, d, pos, key, value))
        if path is not None:
            rec.effects.append(("del", path, key))
    ddel(d, key)
    return value


def dict_ins(
    d: TrackedDict,
    pos: int | None,
    key: Any,
    value: Any,
    rec: Recorder | None,
    path: tuple[Any, ...] | None,
) -> None:
    """Insert a new `key` at position `pos` (None: at the end)."""
    if rec is not None:
        rec.log.append((dict_pop, d, key))
        if path is not None:
            rec.effects.append(
                ("set", path, key, _frozen(value))
                if pos is None
                else ("dins", path, pos, key, _frozen(value))
            )
    if pos is None or pos >= len(d):
        dset(d, key, value)
    else:
        items = list(d.items())
        dclear(d)
        dupdate(d, items[:pos])
        dset(d, key, value)
        dupdate(d, items[pos:])
    if value.__class__ not in _LEAVES:
        value._parent = d
        value._key = key


def dict_fill(
    d: TrackedDict, items: list[tuple[Any, Any]], rec: Recorder | None, path: tuple[Any, ...] | None
) -> None:
    """Fill the empty dict `d` with `items` (the undo of a clear)."""
    if rec is not None:
        rec.log.append((dict_clear, d))
        if path is not None:
            rec.effects.extend(("set", path, k, _frozen(v)) for k, v in items)
    dupdate(d, items)
    for key, value in items:
        if value.__class__ not in _LEAVES:
            value._parent = d
            value._key = key


def dict_clear(d: TrackedDict, rec: Recorder | None, path: tuple[Any, ...] | None) -> None:
    """Remove every key (undo: `dict_fill`)."""
    if rec is not None:
        rec.log.append((dict_fill, d, list(d.items())))
        if path is not None:
            rec.effects.append(("clear", path))
    dclear(d)


def dict_order(
    d: TrackedDict, keys: list[Any], rec: Recorder | None, path: tuple[Any, ...] | None
) -> None:
    """Put the keys of `d` (the same set as `keys`) in the order of `keys`."""
    if rec is not None:
        rec.log.append((dict_order, d, list(d)))
        if path is not None:
            rec.effects.append(("order", path, list(keys)))
    items = list(zip(keys, map(d.__getitem__, keys), strict=True))
    dclear(d)
    dupdate(d, items)


def list_splice(
    lst: TrackedList,
    start: int,
    stop: int,
    items: list[Any],
    rec: Recorder | None,
    path: tuple[Any, ...] | None,
) -> None:
    """Replace ``lst[start:stop]`` (0 <= start <= stop <= len) with `items`."""
    new = len(items)
    old = stop - start
    if rec is not None:
        rec.log.append((list_splice, lst, start, start + new, lst[start:stop]))
        if path is not None:
            if new == 1 and old <= 1:
                effect: tuple[Any, ...] = ("set" if old else "ins", path, start, _frozen(items[0]))
            elif new == 0 and old == 1:
                effect = ("del", path, start)
            elif new == 0 and start == 0 and stop == len(lst):
                effect = ("clear", path)
            else:
                effect = ("splice", path, start, stop, freeze(items))
            rec.effects.append(effect)
    if new == 1 and old == 1:
        lset(lst, start, items[0])
    elif new == 1 and old == 0:
        linsert(lst, start, items[0])
    elif new == 0 and old == 1:
        ldel(lst, start)
    else:
        lset(lst, slice(start, stop), items)
    if not SCALAR_TYPES.issuperset(map(type, items)):
        for i, item in enumerate(items, start):
            if item.__class__ not in _LEAVES:
                item._parent = lst
                item._key = i
    tail = start + new
    if new != old and tail < len(lst):
        stale = lst._stale
        if stale is None or tail < stale:
            lst._stale = tail


def list_perm(
    lst: TrackedList, order: list[int], rec: Recorder | None, path: tuple[Any, ...] | None
) -> None:
    """Reorder `lst` so that its new item i is its old item ``order[i]``."""
    if rec is not None:
        rec.log.append((list_perm, lst, sorted(range(len(order)), key=order.__getitem__)))
        if path is not None:
            rec.effects.append(("perm", path, list(order)))
    lset(lst, slice(None), list(map(lst.__getitem__, order)))
    if lst:
        lst._stale = 0
