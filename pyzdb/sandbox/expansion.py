"""How much of a value a comparison can walk: its *expanded* size, shared parts once per path.

CPython compares containers in one C call that no signal interrupts, and it visits a shared
sub-structure once per path that reaches it: ``a = [a, a]`` forty times is 41 lists in memory
and 2**41 elements to ``==``, ``<``, ``in``, ``count`` or ``sorted``. `expanded` counts what
such a walk may visit, stopping as soon as the count passes a limit, in time proportional to
what it counted or to the *distinct* parts, whichever is smaller:

1. a level at a time with C-level passes (``map``, ``compress``, ``chain.from_iterable``): a
   list of 100,000 records costs a few passes over its elements, no Python step per record;
2. as soon as one level holds the same container twice (sharing: checked once the count passes
   `SHARING_CHECKED_AFTER`), or the value is deeper than `BFS_LEVELS`, a post-order walk over
   the distinct containers, their sizes memoised by id: a doubling DAG costs its 41 lists.

Units: one per element (container, number, key, value), plus one per 64 bytes of a str or bytes
(``memcmp``) and per 512 bits of an int (digit by digit), since equal-length texts and equal big
ints are compared in full. A value that contains itself, or is nested deeper than `MAX_WALKED`
(more than the evaluator's recursion headroom: CPython raises RecursionError before it compares
that deep), has no useful bound: `UNBOUNDED`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import chain, compress, islice, repeat
from operator import floordiv, is_, not_
from typing import Any

from pyzdb.sandbox.iteration import ItemsView
from pyzdb.sandbox.kinds import DICT_KEYS, DICT_VALUES

#: `expanded` of a value that contains itself or is nested deeper than `MAX_WALKED`.
UNBOUNDED = -1
#: Deepest path walked. `pyzdb.sandbox.timers.QUERY_FRAMES` (400) frames are all a request may
#: add to the stack, and CPython's comparisons count against the same recursion limit.
MAX_WALKED = 1000
#: Levels walked a level at a time before the walk over distinct containers takes over.
BFS_LEVELS = 64
#: Units counted a level at a time before each level is checked for a container it holds
#: twice (until then, only its first `_SAMPLE` containers): a value this small is walked
#: whole in a few tens of milliseconds, shared or not, and most values never pay for the check.
SHARING_CHECKED_AFTER = 1 << 20
#: Containers of each level checked for sharing before that: the first few.
_SAMPLE = 1024

#: Characters (or bytes) of a text, and bits of an int, that make one more unit.
_TEXT_UNIT = 64
_INT_UNIT = 512
_TEXT_UNITS = repeat(_TEXT_UNIT)
_INT_UNITS = repeat(_INT_UNIT)

_NONE = type(None)
#: Compared in constant time.
FIXED = frozenset({float, bool, _NONE, complex})
#: Compared in time proportional to their size (memcmp, digits).
_TEXT = frozenset({str, bytes})
SCALARS = FIXED | _TEXT | {int}

_SEQUENCE, _MAPPING, _ITEMS = 1, 2, 3
#: How a container's children are reached; the store's dict and list subclasses join on first
#: sight (`_kind`). Anything else (a range, a function, an iterator, a File) compares in
#: constant time or by identity: one unit, no children.
_KINDS: dict[type, int] = {
    list: _SEQUENCE,
    tuple: _SEQUENCE,
    set: _SEQUENCE,
    frozenset: _SEQUENCE,
    DICT_KEYS: _SEQUENCE,
    DICT_VALUES: _SEQUENCE,
    dict: _MAPPING,
    ItemsView: _ITEMS,
}
_OPAQUE: set[type] = set()


def _kind(cls: type) -> int:
    """The `_KINDS` entry of `cls` (0: opaque), registering list and dict subclasses."""
    kind = _KINDS.get(cls)
    if kind is not None:
        return kind
    if cls in _OPAQUE:
        return 0
    if issubclass(cls, (list, tuple)):
        _KINDS[cls] = _SEQUENCE
    elif issubclass(cls, dict):
        _KINDS[cls] = _MAPPING
    else:
        _OPAQUE.add(cls)
        return 0
    return _KINDS[cls]


def _of_type(items: list[Any], types: list[type], kinds: set[type], cls: type) -> Any:
    """The items whose type is exactly `cls` (`types`: their types in order)."""
    if len(kinds) == 1:
        return items
    return compress(items, map(is_, types, repeat(cls)))


def scalar_cost(items: Any, types: list[type], kinds: set[type]) -> int:
    """Units of the scalars among `items` beyond one each: long texts and big ints.

    >>> items = ["x" * 640, 2**1024, 1.5, [1]]
    >>> scalar_cost(items, list(map(type, items)), set(map(type, items)))
    12
    """
    cost = 0
    for cls in kinds & _TEXT:
        if max(map(len, _of_type(items, types, kinds, cls))) >= _TEXT_UNIT:
            cost += sum(map(floordiv, map(len, _of_type(items, types, kinds, cls)), _TEXT_UNITS))
    if int in kinds and max(map(int.bit_length, _of_type(items, types, kinds, int))) >= _INT_UNIT:
        bits = map(int.bit_length, _of_type(items, types, kinds, int))
        cost += sum(map(floordiv, bits, _INT_UNITS))
    return cost


def expanded(value: Any, limit: int) -> int:
    """Units a comparison of `value` may walk, every shared reference counted in full.

    Some number over `limit` once the count passes it; `UNBOUNDED` for a value that contains
    itself or is nested deeper than `MAX_WALKED`.

    >>> expanded([{"id": 1, "name": "ann"}] * 2, 100)  # the list, 2 dicts, 2 keys and values each
    11
    >>> a = [1]
    >>> for _ in range(40):
    ...     a = [a, a]
    >>> expanded(a, 10**6) > 10**6  # 2**41 elements, walked over its 41 distinct lists
    True
    >>> a.append(a); expanded(a, 10**6)
    -1
    """
    level = [value]
    total = 0
    for _ in range(BFS_LEVELS):
        types = list(map(type, level))
        kinds = set(types)
        total += len(level)
        if not kinds <= FIXED:
            total += scalar_cost(level, types, kinds)
        if total > limit:
            return total
        groups = [(cls, _kind(cls)) for cls in kinds - SCALARS]
        groups = [(cls, kind) for cls, kind in groups if kind]
        if not groups:
            return total
        found = [(kind, _of_type(level, types, kinds, cls)) for cls, kind in groups]
        found = [(kind, list(items)) for kind, items in found]
        following = sum(
            sum(map(len, items)) * (1 if kind == _SEQUENCE else 2) for kind, items in found
        )
        if total + following > limit:
            return total + following
        containers: Iterator[Any] = chain.from_iterable(items for _, items in found)
        if total + following <= SHARING_CHECKED_AFTER:
            containers = islice(containers, _SAMPLE)  # a doubling DAG shows at once
        seen = list(map(id, containers))
        if len(set(seen)) < len(seen):
            return distinct_walk(value, limit)  # shared: level by level it may explode
        level = []
        for kind, items in found:
            if kind == _ITEMS:
                items = list(map(_mapping_of_view, items))
            level += chain.from_iterable(items)  # the items, or the keys of a mapping
            if kind == _MAPPING:
                level += chain.from_iterable(map(dict.values, items))
            elif kind == _ITEMS:
                level += chain.from_iterable(map(_PROXY_VALUES, items))
    return distinct_walk(value, limit)


def _mapping_of_view(view: ItemsView) -> Any:
    """The read-only proxy of the dict behind a query's ``d.items()``."""
    return view.view.mapping


_PROXY_VALUES: Callable[[Any], Any] = type({}.items().mapping).values


def _children(node: Any, kind: int) -> Sequence[Any]:
    if kind == _SEQUENCE:
        return node if isinstance(node, (list, tuple)) else list(node)
    mapping = node.view.mapping if kind == _ITEMS else node
    return [*mapping, *mapping.values()]


def distinct_walk(value: Any, limit: int) -> int:
    """`expanded` by a post-order walk over the distinct containers, memoised by id.

    The slow twin of the level-at-a-time walk: it takes over where that one could explode
    (shared parts) or go on forever (cycles, deep nesting), and tests/test_comparisons.py runs
    both over one table of values.

    >>> distinct_walk([{"id": 1, "name": "ann"}] * 2, 100)
    11
    """
    root_kind = _kind(type(value))
    if not root_kind:
        types = [type(value)]
        return 1 + scalar_cost([value], types, set(types))
    sizes: dict[int, int] = {}
    active: set[int] = set()
    #: (node, kind, depth) to enter, or (node, own size, nested containers) to finish.
    stack: list[tuple[Any, Any, Any]] = [(value, root_kind, 1)]
    while stack:
        node, second, third = stack.pop()
        key = id(node)
        if type(third) is int:  # enter: `second` is its kind, `third` its depth
            if key in sizes:
                continue
            if third > MAX_WALKED:
                return UNBOUNDED
            children = _children(node, second)
            types = list(map(type, children))
            kinds = set(types)
            size = 1 + len(children)
            if not kinds <= FIXED:
                size += scalar_cost(children, types, kinds)
            nested = [
                (child, _kind(type(child)))
                for child in compress(children, map(not_, map(SCALARS.__contains__, types)))
            ]
            nested = [(child, kind) for child, kind in nested if kind]
            active.add(key)
            stack.append((node, size, nested))
            for child, kind in nested:
                child_key = id(child)
                if child_key in active:
                    return UNBOUNDED  # an ancestor: the value contains itself
                if child_key not in sizes:
                    stack.append((child, kind, third + 1))
            continue
        size = second  # finish: `second` is its own size, `third` its nested containers
        for child, _ in third:
            size += sizes[id(child)] - 1  # its own unit is among its parent's children
        if size > limit:
            return size
        active.discard(key)
        sizes[key] = size
    return sizes[id(value)]


__all__ = [
    "UNBOUNDED",
    "MAX_WALKED",
    "BFS_LEVELS",
    "SHARING_CHECKED_AFTER",
    "FIXED",
    "SCALARS",
    "expanded",
    "scalar_cost",
]
