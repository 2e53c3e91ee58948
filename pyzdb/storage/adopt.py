"""Adoption: the validated tracked copy of a value that the tree stores, built in one pass.

Two callers: a mutator storing a user's value (`adopt_value`, `adopt_values`, reached through
`Store.adopt`), and replay or loading turning a frozen value (journal effect, checkpoint) back
into tree form (`thaw`). A copy is built completely before anything is written, so a refused
value leaves the tree untouched; the refusal then comes from `pyzdb.values.validate`, which
walks the original to say what is wrong and where.

The build loop `_build_into` is the measured hot path of storing and loading: containers of
scalars are copied in C, and so, nearly, are lists of flat dicts and of records; it is kept
whole (see ``README.md``).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterable
from itertools import chain, repeat
from typing import Any

from pyzdb.bulk import nested_lists
from pyzdb.gcpause import pause_gc, resume_gc
from pyzdb.limits import MAX_DEPTH, SCALAR_TYPES
from pyzdb.storage.budget import Room, too_many
from pyzdb.storage.raw import dclear, dnew, dset, dupdate, lextend, lnew
from pyzdb.storage.tracked import (
    DICTS,
    KEY_FAST,
    LISTS,
    SOURCE_CONTAINERS,
    TrackedDict,
    TrackedList,
)
from pyzdb.values import File, check_key, describe, map_tuple, thaw_file, validate

__all__ = ["adopt_value", "adopt_values", "thaw"]

#: Flat dicts copied per step when a list of them is thawed: a consuming load drops each chunk of
#: the frozen dicts as soon as it is copied, so the next chunk reuses their memory.
_CHUNK = 4096


class _Refused(Exception):
    """Adoption met something it cannot store; `validate` then says what and where.

    Raised bare where the problem is found; the build loop re-raises it with the location
    ``(source container, its path below the top, its depth)``, so a consuming thaw can validate
    the part that is still intact.
    """


def adopt_value(
    value: Any,
    depth: int,
    sink: Callable[[bytes], str] | None,
    path: tuple[Any, ...] | None,
    key: Any,
    room: Room | None = None,
) -> Any:
    """A validated tracked copy of `value`, to be stored at `key` in a container at `depth`.

    `room` is shared by the values of one mutation, so together they stay within
    `MAX_ADOPT_NODES`; refusals raise before anything is written.
    """
    where = None if path is None else path + (key,)
    try:
        return _build(value, depth + 1, sink, False, room or Room(), where)
    except _Refused:
        pass
    validate(value, where, depth + 1)  # the user's value is intact: explain from its top
    raise TypeError(f"cannot store {type(value).__name__}")  # validate disagreed: still refuse


def adopt_values(
    items: list[Any],
    depth: int,
    sink: Callable[[bytes], str] | None,
    path: tuple[Any, ...] | None,
    start: int,
) -> list[Any]:
    """`adopt_value` for each of `items`, stored from index `start` of a list at `depth`; the
    copies share one `Room`, and a list of scalars is returned as it is."""
    if SCALAR_TYPES.issuperset(map(type, items)):
        return items
    room = Room()
    return [
        v if v.__class__ in SCALAR_TYPES else adopt_value(v, depth, sink, path, start + i, room)
        for i, v in enumerate(items)
    ]


def thaw(value: Any, depth: int, path: tuple[Any, ...], consume: bool = False) -> Any:
    """The tree form of a frozen value (journal replay, checkpoint load) for `path`.

    With `consume`, the frozen containers are emptied as they are copied (see `Store`); a
    refusal then validates only the container where it happened, the one part still intact.
    """
    if value.__class__ in SCALAR_TYPES:
        return value
    try:
        return _build(value, depth, None, True, None, path, consume)
    except _Refused as refused:
        src, rel, level = refused.args or (value, (), depth)
    validate(src, path + rel, level, frozen=True)
    raise ValueError(f"malformed frozen value of type {type(src).__name__}")


def _own_file(file: File, sink: Callable[[bytes], str] | None) -> File:
    """The File to keep in the tree: pending data goes to the blob sink, readers are dropped."""
    if file.data is not None and sink is not None:
        return File(digest=sink(file.data), name=file.name, size=file.size)
    if file._reader is not None:
        return file.with_reader(None)
    return file


def _build_tuple(
    value: tuple[Any, ...], depth: int, sink: Callable[[bytes], str] | None, frozen: bool
) -> tuple[Any, ...]:
    """`value` itself if storable at `depth` as it is, else a rebuilt copy; or `_Refused`."""
    if depth > MAX_DEPTH:
        raise _Refused
    if SCALAR_TYPES.issuperset(map(type, value)):
        return value
    rebuild = False
    seen: dict[int, int] = {}
    stack = [(value, depth)]
    while stack:
        item, level = stack.pop()
        if seen.get(id(item), -1) >= level:
            continue
        seen[id(item)] = level
        for part in item:
            pcls = part.__class__
            if pcls in SCALAR_TYPES:
                continue
            if pcls is tuple:
                if level >= MAX_DEPTH:
                    raise _Refused
                stack.append((part, level + 1))
            elif pcls is File:
                rebuild = (
                    rebuild
                    or part._reader is not None
                    or (part.data is not None and sink is not None)
                )
            elif frozen and pcls is frozenset:
                rebuild = True
            else:
                raise _Refused

    def leaf(part: Any) -> Any:
        if part.__class__ is File:
            return _own_file(part, sink)
        if part.__class__ is frozenset:
            return thaw_file(part)
        return part

    try:
        return map_tuple(value, leaf) if rebuild else value
    except ValueError:
        raise _Refused from None


def _build_leaf(value: Any, depth: int, sink: Callable[[bytes], str] | None, frozen: bool) -> Any:
    cls = value.__class__
    if cls is File:
        return _own_file(value, sink)
    if cls is tuple:
        return _build_tuple(value, depth, sink, frozen)
    if frozen and cls is frozenset:
        try:
            return thaw_file(value)
        except ValueError:
            raise _Refused from None
    raise _Refused


def _build(
    value: Any,
    depth: int,
    sink: Callable[[bytes], str] | None,
    frozen: bool,
    room: Room | None = None,
    where: tuple[Any, ...] | None = (),
    consume: bool = False,
) -> Any:
    """Tracked copy of `value`, which will sit at nesting `depth`; raises `_Refused`.

    One iterative pass that both checks and copies: containers of scalars are copied in C
    (``dict.update``, ``list.extend`` after a C-level type check), and so, nearly, are lists of
    such dicts; only other containers holding containers pay a Python step per item. Children
    get `_parent`/`_key`; the top's are set by the primitive that stores it. `room` bounds the
    containers created (adoption; thawing what the tree already held is not bounded), `where`
    names the target in that refusal, and `consume` empties the frozen source as it goes.
    """
    cls = value.__class__
    if cls in SCALAR_TYPES:
        return value
    if cls is dict or cls is TrackedDict:
        top: Any = dnew(TrackedDict)
    elif cls is list or cls is TrackedList:
        top = lnew(TrackedList)
        top._stale = None
    else:
        return _build_leaf(value, depth, sink, frozen)
    if depth > MAX_DEPTH:
        raise _Refused
    pause_gc()
    try:
        _build_into(top, value, depth, sink, frozen, room, where, consume)
    finally:
        resume_gc()
    if consume:
        value.clear()  # the caller's top, empty rather than marked
    return top


def _flat_dicts(items: Any) -> bool:
    """Whether `items` are all dicts with scalar keys and values (checked in C)."""
    return (
        DICTS.issuperset(map(type, items))
        and KEY_FAST.issuperset(map(type, chain.from_iterable(items)))
        and SCALAR_TYPES.issuperset(map(type, chain.from_iterable(map(dict.values, items))))
    )


def _copy_flat_dicts(dst: TrackedList, src: list[Any], consume: bool) -> None:
    """Append tracked copies of the flat dicts `src` to the empty `dst`.

    Consuming, the copy goes a chunk at a time and each chunk's slots in `src` are released
    before its copies are made, so the frozen dicts die chunk by chunk and the allocator hands
    their blocks to the next chunk's copies: a load then leaves no heap of freed blocks
    interleaved with the tree. A live user value is copied in one go: nothing is freed
    meanwhile, and chunks would only interleave the copies with the chunks' temporaries.
    """
    if not consume:
        _append_flat_copies(dst, src, 0)
        return
    for start in range(0, len(src), _CHUNK):
        part = src[start : start + _CHUNK]
        src[start : start + _CHUNK] = repeat(None, len(part))
        _append_flat_copies(dst, part, start)


def _append_flat_copies(dst: TrackedList, items: list[Any], start: int) -> None:
    """Append tracked copies of `items`, flat dicts, to `dst` from index `start` on.

    ``dict.update`` into an empty dict clones the source's key table in C: no Python step per
    key, and only one per dict to set its `_parent`/`_key`.
    """
    children = list(map(dnew, repeat(TrackedDict, len(items))))
    deque(map(dupdate, children, items), maxlen=0)
    for i, child in enumerate(children, start):
        child._parent = dst
        child._key = i
    lextend(dst, children)


def _append_records(dst: TrackedList, items: list[Any]) -> None:
    """Append tracked copies of the records `items` (see `bulk.nested_lists`) to `dst`.

    As `_append_flat_copies`, then a tracked copy of each list a record holds, in place of the
    source's (every reference copied: the tree holds no container twice).
    """
    start = len(dst)
    children = list(map(dnew, repeat(TrackedDict, len(items))))
    deque(map(dupdate, children, items), maxlen=0)
    lists = LISTS
    for i, child in enumerate(children, start):
        child._parent = dst
        child._key = i
        for key, value in dict.items(child):
            if value.__class__ in lists:
                copy = lnew(TrackedList)
                copy._stale = None
                lextend(copy, value)
                copy._parent = child
                copy._key = key
                dset(child, key, copy)
    lextend(dst, children)


def _build_into(
    top: Any,
    value: Any,
    depth: int,
    sink: Callable[[bytes], str] | None,
    frozen: bool,
    room: Room | None,
    where: tuple[Any, ...] | None,
    consume: bool,
) -> None:
    scalars = SCALAR_TYPES
    # Adoption counts containers against `room`, and notes the source containers with children
    # it copied: meeting one again means the value shares it, and one count over the distinct
    # containers (`_copies`) then says at once whether the expanded copy fits.
    cap = room.left if room is not None else sys.maxsize
    left = cap - 1
    if left < 0:
        raise too_many(where)
    seen: set[int] | None = set() if room is not None else None
    stack = [(value, top, depth)]
    while stack:
        src, dst, level = stack.pop()
        if consume and _consumed(src):
            raise ValueError(
                f"malformed frozen value: a container appears twice, at "
                f"{describe(_rel_path(dst, top))}"
            )
        try:
            inner = level + 1
            if dst.__class__ is TrackedDict:
                if not (scalars if frozen else KEY_FAST).issuperset(map(type, src)):
                    for key in src:
                        if (
                            key.__class__ not in scalars or not frozen and key.__class__ is float
                        ) and not _key_ok(key, level):
                            raise _Refused
                dupdate(dst, src)
                if scalars.issuperset(map(type, src.values())):
                    continue
                pairs: Iterable[tuple[Any, Any]] = list(src.items())
                out = None
            else:
                if scalars.issuperset(map(type, src)):
                    lextend(dst, src)
                    continue
                if inner <= MAX_DEPTH and _flat_dicts(src):
                    left -= len(src)
                    if left < 0:
                        raise too_many(where)
                    _copy_flat_dicts(dst, src, consume)
                    if consume:
                        _mark_consumed(src)
                    continue
                if inner < MAX_DEPTH:
                    lists = nested_lists(src, scalars, DICTS, LISTS)
                    if lists is not None:
                        left -= len(src) + lists
                        if left < 0:
                            raise too_many(where)
                        _append_records(dst, src)
                        if consume:
                            _mark_consumed(src)
                        continue
                out = list(src)
                pairs = enumerate(out)
            if seen is not None:
                if id(src) in seen:
                    seen = None  # shared: count the expansion once, then stop looking
                    if _copies(value, cap) > cap:
                        raise too_many(where)
                else:
                    seen.add(id(src))
            for key, item in pairs:
                icls = item.__class__
                if icls in scalars:
                    continue
                if icls is dict or icls is TrackedDict:
                    child: Any = dnew(TrackedDict)
                elif icls is list or icls is TrackedList:
                    child = lnew(TrackedList)
                    child._stale = None
                else:
                    child = _build_leaf(item, inner, sink, frozen)
                    if out is None:
                        dset(dst, key, child)
                    else:
                        out[key] = child
                    continue
                if inner > MAX_DEPTH:
                    raise _Refused
                left -= 1
                if left < 0:
                    raise too_many(where)
                child._parent = dst
                child._key = key
                stack.append((item, child, inner))
                if out is None:
                    dset(dst, key, child)
                else:
                    out[key] = child
        except _Refused:
            raise _Refused(src, _rel_path(dst, top), level) from None
        pairs = ()  # the stack now holds the only references to the children being copied
        if out is not None:
            lextend(dst, out)
        if consume:
            _mark_consumed(src)
    if room is not None:
        room.left = left


def _rel_path(node: Any, top: Any) -> tuple[Any, ...]:
    """Keys from `top` down to `node`, a container of a copy being built (for messages)."""
    keys = []
    while node is not top:
        keys.append(node._key)
        node = node._parent
    return tuple(reversed(keys))


_CONSUMED: Any = object()


def _mark_consumed(src: Any) -> None:
    """Empty a copied frozen container, leaving a marker that `_consumed` recognises.

    Emptying drops its references, so each child dies as soon as it is copied in turn; the
    marker turns a frozen value that holds one container twice (never written by `freeze`)
    into an error instead of a silently empty second copy.
    """
    if src.__class__ is dict:
        dclear(src)
        dset(src, _CONSUMED, None)
    else:
        src[:] = (_CONSUMED,)


def _consumed(src: Any) -> bool:
    if src.__class__ is dict:
        return len(src) == 1 and _CONSUMED in src
    return len(src) == 1 and src[0] is _CONSUMED


def _copies(value: Any, cap: int) -> int:
    """Containers in a copy of `value`, every reference copied; past `cap`, some count > cap.

    One visit per distinct container (memoised by id), so ``a = [a, a]`` forty times costs 41
    visits, not 2**41. A value that contains itself gives -1: the build refuses it by depth.
    """
    counts: dict[int, int] = {}
    entered: set[int] = set()
    # (container, None) to enter it; (container, its container children) to add them up
    stack: list[tuple[Any, list[Any] | None]] = [(value, None)]
    while stack:
        node, children = stack.pop()
        key = id(node)
        if children is not None:
            total = 1 + sum(counts[id(child)] for child in children)
            if total > cap:
                return total
            counts[key] = total
            continue
        if key in counts:
            continue
        if key in entered:
            return -1
        entered.add(key)
        children = [
            item
            for item in (node.values() if node.__class__ in DICTS else node)
            if item.__class__ in SOURCE_CONTAINERS
        ]
        stack.append((node, children))
        stack.extend((child, None) for child in children if id(child) not in counts)
    return counts[id(value)]


def _key_ok(key: Any, depth: int) -> bool:
    try:
        check_key(key, None, depth)
    except Exception:
        return False
    return True
