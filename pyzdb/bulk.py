"""C-speed passes over whole collections of records: a bound on a value's wire size.

A collection of small dicts (`db['users']`, 200,000 records) has millions of elements, and a
Python step per element costs tens of microseconds a record: the exact walk of
`pyzdb.codec.sizes.measure` does that. Most results are far below their budget, so an upper
bound computed a *level* at a time with C-level passes (``map``, ``compress``,
``chain.from_iterable``, ``sum``) settles them: every element of one nesting level is visited by
builtins, never by a Python frame per element. Only a value whose bound passes the budget, or
that holds something exotic (a `File`, a bytearray, an object that is not data), goes on to the
exact walk, so exotic values pay for it where they occur and bombs are refused by the walk that
was built for them.

The bound counts every reference in full, as msgpack writes it (``[big] * 1000`` is 1000
copies), and stops as soon as the next level would take it past the budget, *before* that
level is built, so a result bomb costs the levels below the budget and no more.

`nested_lists` recognises a collection of records for the store, which then copies it a record
at a time in C. Each pass here has a slow twin that decides alone what it cannot settle, and
tests/test_bulk.py runs both over the same table of values.
"""

from __future__ import annotations

from itertools import chain, compress, repeat
from operator import is_
from typing import Any

#: Bytes msgpack writes at most for an element before its payload: a container's header (5),
#: plus the 3-byte marker of a tuple or set; an int up to 64 bits, a float, None or a bool whole.
_ELEMENT = 9
#: UTF-8 bytes per character at most ('surrogatepass' writes a lone surrogate in 3).
_UTF8_MAX = 4


def wire_bound(
    value: Any,
    limit: int,
    depth: int,
    *,
    scalars: frozenset[type],
    dicts: frozenset[type],
    sequences: frozenset[type],
    plain_types: frozenset[type],
    marked: frozenset[type],
) -> tuple[int, bool, bool] | None:
    """(an upper bound of msgpack's size of `value`, whether it holds only `plain_types`,
    whether it is *native*: holds none of the `marked` types, which the codec writes with a hook).

    `dicts` and `sequences` are the container types to descend into (the store's tracked
    classes among them), `scalars` the leaf types; a value holding any other type, or nested
    deeper than `depth` levels (a cycle is), gives None: the caller measures it exactly. Once
    the bound passes `limit` it is returned at once, some number over `limit`.

    >>> scalars, sequences = frozenset({int, str}), frozenset({list, tuple})
    >>> kinds = dict(scalars=scalars, dicts=frozenset({dict}), sequences=sequences,
    ...              plain_types=scalars | sequences | {dict}, marked=frozenset({tuple}))
    >>> wire_bound([{"id": 1, "name": "ann"}] * 2, 1000, 10, **kinds)  # 29 bytes on the wire
    (121, True, True)
    >>> wire_bound([(1, 2)], 1000, 10, **kinds), wire_bound([{1}], 1000, 10, **kinds)
    ((40, True, False), None)
    """
    allowed = scalars | dicts | sequences
    level = [value]
    total = 0
    plain = True
    native = True
    for _ in range(depth):
        kinds = list(map(type, level))
        types = set(kinds)
        if not allowed.issuperset(types):
            return None
        if plain and not plain_types.issuperset(types):
            plain = False
        if native and not marked.isdisjoint(types):
            native = False
        total += _ELEMENT * len(level)
        if str in types:
            total += _text_bound(_of_type(level, kinds, types, str))
        if bytes in types:
            total += sum(map(len, _of_type(level, kinds, types, bytes)))
        if int in types:  # beyond 64 bits, 4 + 5 header bytes and one per 8 bits, rounded up
            ints = _of_type(level, kinds, types, int)
            total += (sum(map(int.bit_length, ints)) + 16 * len(ints)) // 8
        if total > limit:
            return total, plain, native
        found_dicts = [_of_type(level, kinds, types, cls) for cls in types & dicts]
        found_seqs = [_of_type(level, kinds, types, cls) for cls in types & sequences]
        count = 2 * sum(map(len, chain.from_iterable(found_dicts))) + sum(
            map(len, chain.from_iterable(found_seqs))
        )
        if not count:
            return total, plain, native
        if total + _ELEMENT * count > limit:  # the next level alone is over: do not build it
            return total + _ELEMENT * count, plain, native
        level = []
        for group in found_dicts:
            keys = list(chain.from_iterable(group))
            if set(map(type, keys)) == {str}:  # str keys, the usual: counted here, in C
                total += _ELEMENT * len(keys) + _text_bound(keys)
            else:
                level += keys
            level += chain.from_iterable(map(dict.values, group))
        for group in found_seqs:
            level += chain.from_iterable(group)
    return None


def nested_lists(
    items: Any, scalars: frozenset[type], dicts: frozenset[type], lists: frozenset[type]
) -> int | None:
    """How many lists the records `items` hold, or None if they are not records.

    Records: dicts (of `dicts`) with scalar keys other than floats (a NaN key takes the exact
    path, which refuses it), whose values are scalars or lists (of `lists`) of scalars, as in
    ``{'id': 1, 'name': 'a', 'tags': ['x', 'y']}``. Checked with C-level passes, no Python
    step per record, so the store can copy and freeze such a list a record at a time
    (`dict.update` clones a record's table in C) and touch only its lists.

    >>> kinds = frozenset({int, str}), frozenset({dict}), frozenset({list})
    >>> nested_lists([{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": []}], *kinds)
    2
    >>> nested_lists([{"id": 1, "tags": [["a"]]}], *kinds) is None
    True
    """
    if not dicts.issuperset(map(type, items)):
        return None
    key_types = set(map(type, chain.from_iterable(items)))
    if float in key_types or not scalars.issuperset(key_types):
        return None  # a float key may be a NaN, which the exact path refuses
    values = list(chain.from_iterable(map(dict.values, items)))
    kinds = list(map(type, values))
    if not (scalars | lists).issuperset(kinds):
        return None
    inner = list(compress(values, map(lists.__contains__, kinds)))
    if not scalars.issuperset(map(type, chain.from_iterable(inner))):
        return None
    return len(inner)


def _of_type(level: list[Any], kinds: list[type], types: set[type], cls: type) -> list[Any]:
    """The items of `level` whose type is exactly `cls` (`kinds`: their types, in order)."""
    if len(types) == 1:
        return level
    return list(compress(level, map(is_, kinds, repeat(cls))))


def _text_bound(texts: list[str]) -> int:
    """UTF-8 bytes of `texts` at most: their length when all are ASCII (checked in O(1) each)."""
    chars = sum(map(len, texts))
    return chars if all(map(str.isascii, texts)) else _UTF8_MAX * chars


__all__ = ["nested_lists", "wire_bound"]
