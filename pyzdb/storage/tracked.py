"""The tree's containers: `TrackedDict` and `TrackedList`, whose every mutator is recorded.

The root is a `TrackedDict`; every dict and list under it is a `TrackedDict` or `TrackedList`:
real subclasses, so reads (``d[k]``, iteration, ``len``, ``in``, ``get``) run at C speed. Each
has two slots: `_parent`, the container holding it (the `Store` for the root), and `_key`, its
key there (`ROOT_KEY` for the root). A list child's `_key` is its index, renumbered lazily: when
a list's `_stale` slot is an int, its children's indices may be wrong from that position on, and
are fixed the next time a path through that list is needed.

Every mutator is overridden and does, in this order:

1. materialise user input (iterables, sort keys): user code runs before anything is checked,
   so it cannot move or detach the container between the check and the write;
2. walk `_parent` up to the store (`trace`, O(depth)) for the effect's path, the depth limit,
   and whether the container is still attached: each step checks ``parent[key] is node``, so a
   removed subtree needs no detach pass over its children;
3. refuse on a read-only store (`SecurityError`) or with no unit open (`RuntimeError`: the
   engine always opens one, so this is a pyzdb bug);
4. adopt the new values (`Store.adopt`): validated copies in tracked types, built before
   anything is written, so a refused value leaves nothing half-written and a stored container
   is never aliased;
5. call one of the eight primitives (`pyzdb.storage.primitives`), which write and record.

The containers reach adoption through their store, never by importing it: adoption builds
containers of these two classes, so it is the module that imports this one. For the same
reason a walk up the tree stops at the root by its key, `ROOT_KEY`, not at the `Store` by its
class.

Measured fast paths: `TrackedDict.__setitem__` inlines `trace` and the gate for the root, and
the scalar cases of ``d[k] = v``, ``l[i] = v`` and ``l.append(v)`` inline their primitive. Each
is tied to its slow twin by an equivalence test in ``tests/test_store_fast_paths.py``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, cast

from pyzdb.errors import SecurityError
from pyzdb.limits import SCALAR_TYPES
from pyzdb.storage.arguments import findable, list_index, missing_key, update_items
from pyzdb.storage.budget import Room
from pyzdb.storage.primitives import (
    Recorder,
    dict_clear,
    dict_pop,
    dict_set,
    list_perm,
    list_splice,
)
from pyzdb.storage.raw import dget, dset, lappend, lset
from pyzdb.values import check_key, register_tree_types

if TYPE_CHECKING:
    from typing_extensions import Self

    from pyzdb.storage.store import Store

__all__ = [
    "DICTS",
    "KEY_FAST",
    "LISTS",
    "ROOT_KEY",
    "SOURCE_CONTAINERS",
    "TRACKED",
    "TrackedDict",
    "TrackedList",
    "trace",
]

_READ_ONLY = "query is read-only: db.query() cannot change the database, use db.execute()"
_NO_UNIT = "pyzdb bug: the tree was mutated with no unit open (Store.begin() was not called)"

#: Key types that need no check: a float key may be a NaN, which could never be replayed.
KEY_FAST = SCALAR_TYPES - {float}
_MISSING: Any = object()
#: The `_key` of the root, the one container whose `_parent` is its `Store`: no key can be it.
ROOT_KEY: Any = object()


class TrackedDict(dict):
    """A dict stored in the tree; every mutator records an undo record and an effect.

    Reads are inherited from dict and run at C speed. Mutators follow the module's five steps;
    each is O(depth) plus the cost of the dict operation, except deleting a non-last key, which
    also finds its position: O(n) in C for dicts up to `SMALL_DICT` keys, else one O(n) copy of
    the key order per dict per savepoint segment.
    """

    __slots__ = ("_parent", "_key")
    #: The container holding this one, or the `Store` for the root: `_key is ROOT_KEY` tells
    #: which, a test the type checker cannot narrow on.
    _parent: Any
    #: Its key in `_parent` (a list child's index, see `_stale`), or `ROOT_KEY`.
    _key: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("tree containers are made by the store: store a plain dict instead")

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # pickle/copy give plain data: a tracked container outside its tree makes no sense
        return dict, (dict(self),)

    def __setitem__(self, key: Any, value: Any) -> None:
        # The hot path (``db['c'] += 1``): the root and scalar cases are inlined.
        if self._key is ROOT_KEY:
            store = self._parent
            path: tuple[Any, ...] | None = ()
            depth = 0
        else:
            store, path, depth = trace(self)
        rec = store._rec
        if rec is None or not store.writable:
            _refuse(store)
        if key.__class__ not in KEY_FAST:
            check_key(key, path, depth)
        old = dget(self, key, _MISSING)
        if value.__class__ not in SCALAR_TYPES:
            if old is value:
                return  # ``db['l'] += [x]`` stores the list it just extended: nothing to do
            dict_set(self, key, store.adopt(value, depth, path, key), rec, path)
            return
        rec.log.append((dict_pop, self, key) if old is _MISSING else (dict_set, self, key, old))
        if path is not None:
            rec.effects.append(("set", path, key, value))
        dset(self, key, value)

    def __delitem__(self, key: Any) -> None:
        store, path, _ = trace(self)
        rec = _gate(store)
        if not (findable(key) and key in self):
            raise missing_key(key)
        dict_pop(self, key, rec, path)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove `key` and return its value (detached), else `default`, else KeyError."""
        store, path, _ = trace(self)
        rec = _gate(store)
        if not (findable(key) and key in self):
            if default is _MISSING:
                raise missing_key(key)
            return default
        return dict_pop(self, key, rec, path)

    def popitem(self) -> tuple[Any, Any]:
        """Remove and return the last (key, value) pair."""
        store, path, _ = trace(self)
        rec = _gate(store)
        if not self:
            raise KeyError("popitem(): dictionary is empty")
        key = next(reversed(self))
        return key, dict_pop(self, key, rec, path)

    def clear(self) -> None:
        """Remove every key; undo gives them back in order."""
        store, path, _ = trace(self)
        rec = _gate(store)
        if self:
            dict_clear(self, rec, path)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """dict.update in all its forms; every value is validated before the first is written."""
        if len(args) > 1:
            raise TypeError(f"update expected at most 1 argument, got {len(args)}")
        items = update_items(args[0] if args else (), kwargs)
        store, path, depth = trace(self)
        rec = _gate(store)
        room = Room()
        adopted = []
        for key, value in items:
            if key.__class__ not in KEY_FAST:
                check_key(key, path, depth)
            if value.__class__ not in SCALAR_TYPES:
                value = store.adopt(value, depth, path, key, room)
            adopted.append((key, value))
        for key, value in adopted:
            dict_set(self, key, value, rec, path)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """The value at `key`, storing (a copy of) `default` there first if it is missing."""
        store, path, depth = trace(self)
        rec = _gate(store)
        if findable(key) and key in self:
            return self[key]
        check_key(key, path, depth)
        if default.__class__ not in SCALAR_TYPES:
            default = store.adopt(default, depth, path, key)
        dict_set(self, key, default, rec, path)
        return default

    # ignore[misc]: the builtin's own signatures (typeshed: __ior__ takes more than __or__); mypy's
    # in-place-operator check refuses for a subclass what the builtin itself declares.
    def __ior__(self, other: Any) -> Self:  # type: ignore[misc]
        self.update(other)
        return self


class TrackedList(list):
    """A list stored in the tree; every mutator records an undo record and an effect.

    Reads are inherited from list. Mutators cost O(depth) plus the list operation; a mutator
    that shifts elements marks the list `_stale` from the first shifted index instead of
    renumbering its children, which happens once, when a path through the list is next needed.
    """

    __slots__ = ("_parent", "_key", "_stale")
    _parent: Any  # as in TrackedDict
    _key: Any
    #: None, or the first index from which the children's `_key` may be wrong.
    _stale: int | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("tree containers are made by the store: store a plain list instead")

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return list, (list(self),)

    def __setitem__(self, index: Any, value: Any) -> None:
        if index.__class__ is slice:
            _set_slice(self, index, value)
            return
        store, path, depth = trace(self)
        rec = _gate(store)
        i = list_index(index, len(self), "list assignment index out of range")
        if value.__class__ not in SCALAR_TYPES:
            if self[i] is value:
                return  # ``l[0] += [x]`` stores the list it just extended: nothing to do
            list_splice(self, i, i + 1, [store.adopt(value, depth, path, i)], rec, path)
            return
        rec.log.append((list_splice, self, i, i + 1, [self[i]]))
        if path is not None:
            rec.effects.append(("set", path, i, value))
        lset(self, i, value)

    def __delitem__(self, index: Any) -> None:
        store, path, _ = trace(self)
        rec = _gate(store)
        n = len(self)
        if index.__class__ is not slice:
            i = list_index(index, n, "list assignment index out of range")
            list_splice(self, i, i + 1, [], rec, path)
            return
        start, stop, step = index.indices(n)
        if step == 1:
            if stop > start:
                list_splice(self, start, stop, [], rec, path)
            return
        gone = range(start, stop, step)
        if len(gone) == 1:
            list_splice(self, gone[0], gone[0] + 1, [], rec, path)
        elif gone:
            # One O(n) permutation (kept first, removed last) and a cut of the tail: replaying
            # k single deletes would cost O(k*n).
            removed = set(gone)
            kept = [i for i in range(n) if i not in removed]
            list_perm(self, kept + sorted(removed), rec, path)
            list_splice(self, len(kept), n, [], rec, path)

    def append(self, value: Any) -> None:
        """Append (a copy of) `value`."""
        store, path, depth = trace(self)
        rec = _gate(store)
        n = len(self)
        if value.__class__ not in SCALAR_TYPES:
            list_splice(self, n, n, [store.adopt(value, depth, path, n)], rec, path)
            return
        rec.log.append((list_splice, self, n, n + 1, []))
        if path is not None:
            rec.effects.append(("ins", path, n, value))
        lappend(self, value)

    def extend(self, values: Iterable[Any]) -> None:
        """Append (copies of) every item of `values`, all validated before the first is."""
        items = list(values)
        store, path, depth = trace(self)
        rec = _gate(store)
        if items:
            n = len(self)
            list_splice(self, n, n, store.adopt_all(items, depth, path, n), rec, path)

    def insert(self, index: Any, value: Any) -> None:
        """Insert (a copy of) `value` before `index` (clamped like list.insert)."""
        store, path, depth = trace(self)
        rec = _gate(store)
        n = len(self)
        i = operator.index(index)
        i = min(max(i + n, 0) if i < 0 else i, n)
        if value.__class__ not in SCALAR_TYPES:
            value = store.adopt(value, depth, path, i)
        list_splice(self, i, i, [value], rec, path)

    def pop(self, index: Any = -1) -> Any:
        """Remove and return the item at `index` (detached)."""
        store, path, _ = trace(self)
        rec = _gate(store)
        n = len(self)
        if not n:
            raise IndexError("pop from empty list")
        i = list_index(operator.index(index), n, "pop index out of range")
        value = self[i]
        list_splice(self, i, i + 1, [], rec, path)
        return value

    def remove(self, value: Any) -> None:
        """Remove the first item equal to `value`."""
        store, path, _ = trace(self)
        rec = _gate(store)
        try:
            i = list.index(self, value)
        except ValueError:
            raise ValueError("list.remove(x): x not in list") from None
        list_splice(self, i, i + 1, [], rec, path)

    def clear(self) -> None:
        """Remove every item."""
        store, path, _ = trace(self)
        rec = _gate(store)
        if self:
            list_splice(self, 0, len(self), [], rec, path)

    def sort(self, *, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        """Stable sort, recorded as the permutation it applies (an O(n) ``perm`` effect)."""
        items = list(self)
        keys = items if key is None else list(map(key, items))
        order = sorted(range(len(items)), key=keys.__getitem__, reverse=reverse)
        store, path, _ = trace(self)
        rec = _gate(store)
        if key is not None and (len(self) != len(items) or not all(map(operator.is_, self, items))):
            raise ValueError("list modified during sort")
        if order != list(range(len(order))):
            list_perm(self, order, rec, path)

    def reverse(self) -> None:
        """Reverse in place (a ``perm`` effect)."""
        store, path, _ = trace(self)
        rec = _gate(store)
        if len(self) > 1:
            list_perm(self, list(range(len(self) - 1, -1, -1)), rec, path)

    # ignore[misc]: the builtin's own signatures (typeshed: __iadd__ takes more than
    # __add__); mypy's in-place-operator check refuses for a subclass what the builtin
    # itself declares.
    def __iadd__(self, other: Iterable[Any]) -> Self:  # type: ignore[misc]
        self.extend(other)
        return self

    # ignore[misc]: as for __iadd__ (list.__imul__ vs list.__mul__).
    def __imul__(self, times: Any) -> Self:  # type: ignore[misc]
        try:
            k = operator.index(times)
        except TypeError:
            raise TypeError(
                f"can't multiply sequence by non-int of type '{type(times).__name__}'"
            ) from None
        store, path, depth = trace(self)
        rec = _gate(store)
        n = len(self)
        if n and k <= 0:
            list_splice(self, 0, n, [], rec, path)
        elif n and k > 1:
            # each repeat is a copy: the tree never holds one container twice
            list_splice(
                self,
                n,
                n,
                store.adopt_all(list(self) * (k - 1), depth, path, n),
                rec,
                path,
            )
        return self


# Python's own messages name the type (``'<' not supported between instances of 'dict' and
# 'list'``, ``unhashable type: 'list'``): a query should read what plain Python says. The
# qualified names stay, so reprs of the classes still say TrackedDict/TrackedList.
TrackedDict.__name__ = "dict"
TrackedList.__name__ = "list"
TRACKED = (TrackedDict, TrackedList)
DICTS = frozenset({dict, TrackedDict})
LISTS = frozenset({list, TrackedList})
SOURCE_CONTAINERS = DICTS | LISTS
register_tree_types(TrackedDict, TrackedList)


def trace(node: TrackedDict | TrackedList) -> tuple[Store, tuple[Any, ...] | None, int]:
    """(store, path or None if detached, depth) of `node`, by walking `_parent`: O(depth)."""
    path: tuple[Any, ...] = ()
    key = node._key
    while key is not ROOT_KEY:
        parent = node._parent
        if parent.__class__ is TrackedDict:
            if dget(parent, key, _MISSING) is not node:
                return _detached(parent, len(path) + 1)
        else:
            if parent._stale is not None:
                _renumber(parent)
                key = node._key
            if key >= len(parent) or parent[key] is not node:
                return _detached(parent, len(path) + 1)
        path = (key, *path)
        node = parent
        key = node._key
    return node._parent, path, len(path)


def _detached(node: Any, edges: int) -> tuple[Store, None, int]:
    """`trace` past the point where the chain left the tree: only the store and depth matter
    (the depth of the old chain bounds the depth the node could regain through undo)."""
    while node._key is not ROOT_KEY:
        node = node._parent
        edges += 1
    return node._parent, None, edges


def _renumber(lst: TrackedList) -> None:
    """Give the children of `lst` their current index again, from its `_stale` mark on."""
    start = cast(int, lst._stale)  # only called on a stale list
    lst._stale = None
    for i in range(start, len(lst)):
        child = lst[i]
        if child.__class__ in TRACKED:
            child._key = i


def _gate(store: Store) -> Recorder:
    rec = store._rec
    if rec is None or not store.writable:
        _refuse(store)
    return rec


def _refuse(store: Store) -> NoReturn:
    if not store.writable:
        raise SecurityError(_READ_ONLY)
    raise RuntimeError(_NO_UNIT)


def _set_slice(lst: TrackedList, index: slice, value: Any) -> None:
    try:
        items = list(value)
    except TypeError:
        raise TypeError(
            "can only assign an iterable"
            if index.step in (None, 1)
            else "must assign iterable to extended slice"
        ) from None
    store, path, depth = trace(lst)
    rec = _gate(store)
    start, stop, step = index.indices(len(lst))
    if step == 1:
        stop = max(start, stop)
        list_splice(lst, start, stop, store.adopt_all(items, depth, path, start), rec, path)
        return
    where = range(start, stop, step)
    if len(items) != len(where):
        raise ValueError(
            f"attempt to assign sequence of size {len(items)} "
            f"to extended slice of size {len(where)}"
        )
    room = Room()
    adopted = [
        v if v.__class__ in SCALAR_TYPES else store.adopt(v, depth, path, i, room)
        for i, v in zip(where, items, strict=True)
    ]
    for i, v in zip(where, adopted, strict=True):
        list_splice(lst, i, i + 1, [v], rec, path)
