"""The plain copies of a value: `freeze` for the journal, `to_plain` for a query result.

Both walk a stored (or storable) value and build a copy made of plain ``dict list tuple`` (and,
for a result, ``set frozenset``) that shares no container with the tree:

* `freeze` gives the *frozen* form (see `pyzdb.values`): every `File` becomes its marker, so
  `marshal` writes the copy in C. It runs on every mutation's effect and on checkpoints.
* `to_plain` detaches a query result for its caller, refusing anything that is not data, with
  the path of the culprit (``query result contains generator at result[2]``).

Most values are collections of small records, so both first try C-level passes (a type check
with ``set(map(type, ...))``, ``dict(d)``, ``marshal``), and only what those cannot take pays a
Python step per container. The walks use explicit stacks, as those of `pyzdb.values` do.
"""

from __future__ import annotations

import gc
import marshal
from itertools import chain, repeat
from typing import Any

from pyzdb.bulk import nested_lists
from pyzdb.errors import LimitExceeded
from pyzdb.gcpause import pause_gc, resume_gc
from pyzdb.limits import SCALAR_TYPES
from pyzdb.values import (
    RESULT_DEPTH,
    File,
    describe,
    freeze_file,
    map_tuple,
    tree_types,
)

#: The containers a query result may hold, copied as themselves (a dict or list subclass, such
#: as the store's tracked ones, is copied as a plain dict or list).
RESULT_CONTAINERS = frozenset({list, dict, tuple, set, frozenset})


def _freeze_leaf(item: Any) -> Any:
    if item.__class__ is File:
        return freeze_file(item)
    return item


def _freeze_tuple(value: tuple[Any, ...]) -> tuple[Any, ...]:
    if SCALAR_TYPES.issuperset(map(type, value)):
        return value
    return map_tuple(value, _freeze_leaf)


def _scalar_dicts(items: list[Any], keys: bool = False) -> bool:
    """True if every item is a dict whose values (and `keys`) are all scalars.

    Checked in C, with one type stream over all the values: no Python frame per item.
    """
    return (
        all(map(isinstance, items, repeat(dict)))
        and SCALAR_TYPES.issuperset(map(type, chain.from_iterable(map(dict.values, items))))
        and (not keys or SCALAR_TYPES.issuperset(map(type, chain.from_iterable(items))))
    )


def freeze(value: Any) -> Any:
    """The frozen (plain, marshal-able) form of a stored or storable value.

    Runs on every mutation's effect and on checkpoints, so containers of scalars are copied in C
    (``dict(d)``, ``list(l)`` after a C-level type check), and a list or dict whose elements are
    all dicts of scalars is converted with C-level ``map`` calls, without a Python frame per item.

    >>> frozen = freeze({"users": [{"id": 1}], "f": File(digest="0" * 64, name="a", size=1)})
    >>> frozen["users"], frozen["f"] == frozenset({("pyzdb.File", "0" * 64, "a", 1)})
    ([{'id': 1}], True)
    """
    cls = value.__class__
    if cls in SCALAR_TYPES:
        return value
    if cls is tuple:
        return _freeze_tuple(value)
    if cls is File:
        return _freeze_leaf(value)
    if isinstance(value, dict):
        top: Any = dict(value)
    elif isinstance(value, list):
        top = list(value)
    else:
        raise TypeError(f"cannot freeze {cls.__name__}: not a stored value")
    pause_gc()
    try:
        _freeze_into(top)
    finally:
        resume_gc()
    return top


def _freeze_into(top: Any) -> None:
    """Freeze, in place, the children of `top`, a fresh plain copy of a container."""
    scalars = SCALAR_TYPES
    stack = [top]
    copy: dict[Any, Any] | list[Any]
    while stack:
        node = stack.pop()
        pairs = _pairs_left(node)
        if pairs is None:
            continue
        for key, item in pairs:
            icls = item.__class__
            if icls in scalars:
                continue
            if icls is tuple:
                node[key] = _freeze_tuple(item)
            elif icls is File:
                node[key] = _freeze_leaf(item)
            elif isinstance(item, dict):
                node[key] = copy = dict(item)
                stack.append(copy)
            elif isinstance(item, list):
                node[key] = copy = list(item)
                stack.append(copy)
            else:
                raise TypeError(f"cannot freeze {icls.__name__}: not a stored value")


def _pairs_left(node: Any) -> Any:
    """Freeze `node`'s children in C if their shape allows; else its (key, child) pairs, which
    `_freeze_into` then freezes a child at a time."""
    scalars = SCALAR_TYPES
    if node.__class__ is dict:
        if scalars.issuperset(map(type, node.values())):
            return None
        values = list(node.values())
        if _scalar_dicts(values):
            node.update(zip(list(node), map(dict, values), strict=True))
            return None
        return node.items()
    if scalars.issuperset(map(type, node)):
        return None
    if _scalar_dicts(node):
        node[:] = map(dict, node)
        return None
    dicts, lists = tree_types()
    if nested_lists(node, scalars, dicts, lists) is not None:
        node[:] = map(dict, node)  # records: copied in C, then only their lists
        for record in node:
            for key, item in record.items():
                if item.__class__ in lists:
                    record[key] = list(item)
        return None
    return enumerate(node)


# -- query results -------------------------------------------------------------------------

_RESULT_LEAVES = SCALAR_TYPES | {File}
_MARSHAL_DATA = SCALAR_TYPES | RESULT_CONTAINERS
_NOT_DATA_HINTS = {
    "dict_keys": " (return list(d.keys()))",
    "dict_values": " (return list(d.values()))",
    "dict_items": " (return list(d.items()))",
    "range": " (return list(range(...)))",
    "generator": " (return a list, e.g. list(x for ...))",
    "map": " (return list(map(...)))",
    "filter": " (return list(filter(...)))",
    "zip": " (return list(zip(...)))",
    "enumerate": " (return list(enumerate(...)))",
}


def _not_data(cls: type, rel: tuple[Any, ...]) -> TypeError:
    where = "result" + describe((), rel)[2:]
    hint = _NOT_DATA_HINTS.get(cls.__name__, "")
    return TypeError(
        f"query result contains {cls.__name__} at {where}: only None, bool, int, "
        f"float, str, bytes, tuple, list, dict, set, frozenset and File can be "
        f"returned{hint}"
    )


def _marshal_copy(value: Any, max_depth: int) -> Any:
    """Deep-copy plain data through marshal (C); `None` if that is not safe or not possible.

    marshal also writes code objects, complex numbers, Ellipsis, bytearray..., so the types of
    everything reachable are checked first, a level at a time with `gc.get_referents` (C). A
    value whose walk visits more objects than the dump has bytes shares sub-values, and the
    memoising walk handles it instead.
    """
    try:
        blob = marshal.dumps(value)
    except (ValueError, TypeError):
        return None
    budget = len(blob)
    level: list[Any] = [value]
    for _ in range(max_depth + 1):
        if not _MARSHAL_DATA.issuperset(map(type, level)):
            return None
        budget -= len(level)
        if budget < 0:
            return None
        level = gc.get_referents(*level)
        if not level:
            return marshal.loads(blob)
    return None


def to_plain(value: Any, max_depth: int = RESULT_DEPTH) -> Any:
    """A detached deep copy of a query result in plain types, refusing anything but data.

    Tracked containers become plain dicts and lists, and the caller can keep or mutate the copy
    without touching the tree. Functions, generators, views, ranges, types... raise ``TypeError:
    query result contains <type> at result[...]``; nesting beyond `max_depth` (a cycle, for one)
    raises `LimitExceeded`. Shared sub-values are copied once and stay shared.

    >>> shared = [1]
    >>> copy = to_plain({"a": shared, "b": shared})
    >>> copy == {"a": [1], "b": [1]}, copy["a"] is shared, copy["a"] is copy["b"]
    (True, False, True)
    >>> to_plain([1, iter([])])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: query result contains list_iterator at result[1]: only None, bool, int, ...
    """
    cls = value.__class__
    if cls in _RESULT_LEAVES:
        return value
    if cls in _MARSHAL_DATA:
        copy = _marshal_copy(value, max_depth)
        if copy is not None:
            return copy
    pause_gc()
    try:
        return _plain_copies(_plain_order(value, max_depth), value)
    finally:
        resume_gc()


def plain_kind(cls: type) -> type | None:
    """The result container `cls` is copied as (a dict or list subclass as dict or list), or
    None if `cls` is no container.

    >>> plain_kind(tuple), plain_kind(type("Tracked", (dict,), {})), plain_kind(str)
    (<class 'tuple'>, <class 'dict'>, None)
    """
    if cls in (tuple, set, frozenset):
        return cls
    if issubclass(cls, dict):
        return dict
    if issubclass(cls, list):
        return list
    return None


def _plain_order(value: Any, max_depth: int) -> list[tuple[Any, type, bool]]:
    """`to_plain`'s walk for what marshal refused: the containers of `value`, each once, in
    post-order, with its kind and whether it is flat (holds leaves only, copied in C)."""
    leaves = _RESULT_LEAVES
    order: list[tuple[Any, type, bool]] = []
    state: dict[int, bool] = {}  # id -> True once copied in `order`, False while being walked
    # Entries: (item, rel, level, None) to enter an item, (item, kind, flat, True) to leave it.
    stack: list[tuple[Any, Any, Any, Any]] = [(value, (), 0, None)]
    while stack:
        item, rel, level, leaving = stack.pop()
        if leaving:  # rel and level hold the kind and flatness here
            state[id(item)] = True
            order.append((item, rel, level))
            continue
        cls = item.__class__
        if cls in leaves:
            continue
        kind = plain_kind(cls)
        if kind is None:
            raise _not_data(cls, rel)
        seen = state.get(id(item))
        if seen is True:
            continue
        if seen is False or level > max_depth:
            what = (
                "contains a reference cycle"
                if seen is False
                else f"is nested deeper than {max_depth} levels"
            )
            raise LimitExceeded(
                f"query result {what} at result{describe((), rel)[2:]}", budget="depth"
            )
        state[id(item)] = False
        if kind is dict:
            flat = leaves.issuperset(map(type, item.values())) and leaves.issuperset(
                map(type, item)
            )
        else:
            flat = leaves.issuperset(map(type, item)) or (
                kind is list and _scalar_dicts(item, keys=True)
            )
        stack.append((item, kind, flat, True))
        if flat:
            continue
        if kind is dict:
            for key, child in reversed(item.items()):
                stack.append((child, rel + (key,), level + 1, None))
                stack.append((key, rel, level + 1, None))
        else:
            stack.extend(
                (child, rel + (i,), level + 1, None) for i, child in reversed(list(enumerate(item)))
            )
    return order


def _plain_copies(order: list[tuple[Any, type, bool]], value: Any) -> Any:
    """The copy of `value`, built from `_plain_order`'s containers, children before parents."""
    leaves = _RESULT_LEAVES
    copies: dict[int, Any] = {}

    def conv(child: Any) -> Any:
        return child if child.__class__ in leaves else copies[id(child)]

    for item, kind, flat in order:
        if kind is dict:
            copy: Any = dict(item) if flat else {conv(k): conv(v) for k, v in item.items()}
        elif kind is list:
            if not flat:
                copy = list(map(conv, item))
            elif leaves.issuperset(map(type, item)):
                copy = list(item)
            else:
                copy = list(map(dict, item))
        elif kind is tuple:
            copy = item if flat else tuple(map(conv, item))
        else:
            copy = kind(item) if flat else kind(map(conv, item))
        copies[id(item)] = copy
    return copies[id(value)]


__all__ = ["RESULT_CONTAINERS", "freeze", "plain_kind", "to_plain"]
