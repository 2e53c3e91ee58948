"""The size model of the wire codec: how many bytes msgpack writes for a value.

A result may refer to one container many times (``[big] * 1000``). In this process that costs
nothing, but msgpack (the wire codec's encoder) writes every reference in full, so the size that
counts against the result budget is the *expanded* one. The sizes here are msgpack's: exact for
most values, and otherwise a bound a few bytes over (where a C-level pass was enough to decide),
so a value within the budget here always encodes within it. They live beside the encoder because
they restate its rules (a header of 1, 3 or 5 bytes, a 3-byte marker before a tuple, a set or a
frozenset, ints beyond 64 bits as marked bytes): a change to one is a change to the other.

`measure` tries three ways, cheapest first, and each hands on what it cannot settle:
`bulk.wire_bound` (a level at a time in C), then `_Sizer`'s walk with C-level bounds, then the
same walk counting exactly. tests/test_bulk.py drives all of them over one table of values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import chain, islice, repeat
from typing import Any, NamedTuple

from pyzdb.bulk import wire_bound
from pyzdb.errors import LimitExceeded
from pyzdb.limits import SCALAR_TYPES
from pyzdb.plain import RESULT_CONTAINERS, plain_kind
from pyzdb.values import RESULT_DEPTH, File, tree_types

_NoneType = type(None)

#: The types msgpack writes as ``[ext mark (3 bytes), *items]``: not native to it.
MARKED_TYPES = frozenset({tuple, set, frozenset})

_FIXED_SIZE = {_NoneType: 1, bool: 1, float: 9}  # msgpack's size whatever the value
_SEQUENCES = frozenset({list, tuple, set, frozenset})
_PLAIN_VALUES = SCALAR_TYPES | RESULT_CONTAINERS
# key types whose equal keys are the same type and size (1 == 1.0 == True are not), so keys can
# be counted by value
_UNIQUE_KEYS = frozenset({str, bytes, _NoneType})


class _Absent:
    """What `dict.get` gives `_Sizer.records` for a missing key (``dict.get`` never calls a
    subclass's ``__missing__``)."""


_ABSENT = _Absent()
_RUN = 4096  # elements a Python-level sum adds up between two checks of the limit


class Measure(NamedTuple):
    """What `measure` found: the expanded wire `size`, and what detaching the value needs.

    `plain`: the value holds only exact ``list dict tuple set frozenset`` and scalars, within
    `RESULT_DEPTH`, so `to_plain` would return an equal copy. `files`: it holds a `File`.
    """

    size: int
    plain: bool
    files: bool
    #: Only scalars, dicts and lists (tracked ones too): the encoder writes it with no hook
    #: (``encode_wire(value, native=True)``).
    native: bool = False


def expanded_size(value: Any, limit: int) -> int:
    """Bytes msgpack writes for `value`, every shared reference expanded in full.

    Counting stops once the total passes `limit` (the result is then some number over it), and
    each distinct container is scanned once however often it is referred to, so a result bomb
    (``[[big] * 1000] * 1000``) is refused in the time its distinct parts take. Lists of scalars
    and lists of flat dicts or tuples are measured with C-level passes (``set(map(type, ...))``,
    ``sum(map(len, ...))``), no Python step per element. Objects that are not data count as one
    byte (whoever encodes the value refuses them). A value that contains itself has no finite
    expansion: `LimitExceeded` with ``budget="depth"``, as from `to_plain`.

    >>> big = ["x" * 1000]
    >>> expanded_size([big] * 3, 3013)  # 1 + 3 x 1004: every reference written in full
    3013
    >>> expanded_size([big] * 10**6, 10**6) > 10**6  # a bomb: refused from its distinct parts
    True
    """
    return measure(value, limit).size


def measure(value: Any, limit: int) -> Measure:
    """`expanded_size` of `value`, and whether it is already plain (see `Measure`).

    First `bulk.wire_bound`, a level at a time in C: a bound within `limit` settles it (and is
    the size returned, a little over the exact one). Else a walk may settle for C-level bounds
    a little over the exact sizes (``2 + b/4`` bytes for an int of b bits, 5 bytes of header
    for every str); only when their total passes `limit` does a second walk count exactly, so
    the verdict is the exact one's.

    >>> measure({"ids": [1, 2, 3]}, 100)  # 9 bytes on the wire: the C-level bound settles it
    Measure(size=63, plain=True, files=False, native=True)
    >>> measure({"ids": [1, 2, 3]}, 9)  # a limit the bounds pass: the walk counts exactly
    Measure(size=9, plain=True, files=False, native=False)
    >>> measure(None, 100)  # a scalar of a fixed size (every execute's usual result): exact
    Measure(size=1, plain=True, files=False, native=True)
    """
    cls = type(value)
    fixed = _FIXED_SIZE.get(cls)
    if fixed is not None:
        return Measure(fixed, True, False, True)
    if cls is int and limit >= 9 and value.bit_length() < 64:  # 9 bytes at most: within
        return Measure(9, True, False, True)
    dicts, lists = tree_types()
    fast = wire_bound(
        value,
        limit,
        RESULT_DEPTH,
        scalars=SCALAR_TYPES,
        dicts=dicts,
        sequences=_SEQUENCES | lists,
        plain_types=_PLAIN_VALUES,
        marked=MARKED_TYPES,
    )
    if fast is not None and fast[0] <= limit:  # a bound within the limit: settled in C
        return Measure(fast[0], fast[1], False, fast[2])
    found = _Sizer(limit, False).run(value)
    return found if found.size <= limit else _Sizer(limit, True).run(value)


class _Sizer:
    """One `measure` walk, post-order over the distinct containers, sizes memoised by id."""

    __slots__ = ("limit", "exact", "sizes", "entered", "texts", "plain", "files")

    def __init__(self, limit: int, exact: bool) -> None:
        self.limit = limit
        self.exact = exact  # count exactly: no bounds, however expensive
        self.sizes: dict[int, int] = {}
        self.entered: set[int] = set()  # containers on the current path: meeting one is a cycle
        # UTF-8 sizes of the long non-ASCII str met (by id): each is encoded once, however
        # often the value refers to it
        self.texts: dict[int, int] = {}
        self.plain = True
        self.files = False

    def run(self, value: Any) -> Measure:
        cls = value.__class__
        if plain_kind(cls) is None:
            size = self.scalar(value) if cls in SCALAR_TYPES else self.leaf(value)
            return Measure(size, self.plain, self.files)
        limit = self.limit
        sizes = self.sizes
        entered = self.entered
        # (container, level, None) measures its own elements; (container, level, (own size,
        # ids of its container elements)) adds up those, measured by then
        stack: list[tuple[Any, int, Any]] = [(value, 0, None)]
        while stack:
            node, level, pending = stack.pop()
            key = id(node)
            if pending is not None:
                own, ids = pending
                entered.discard(key)
                size = sizes[key] = own + sum(map(sizes.__getitem__, ids))
                if size > limit:
                    return Measure(size, False, self.files)
                continue
            if key in sizes:
                continue
            if key in entered:
                raise LimitExceeded("query result contains a reference cycle", budget="depth")
            cls = node.__class__
            kind = plain_kind(cls)
            if cls is not kind or level >= RESULT_DEPTH:
                self.plain = False  # to_plain copies it, or refuses it with its path
            marked = kind in MARKED_TYPES
            own = _head(len(node) + marked) + 3 * marked
            children: list[Any] = []
            for part in (dict.keys(node), dict.values(node)) if kind is dict else (node,):
                own += self.part(part, children, limit - own)
                if own > limit:
                    return Measure(own, False, self.files)
            if not children:
                sizes[key] = own
                continue
            entered.add(key)
            stack.append((node, level, (own, list(map(id, children)))))
            distinct = dict(zip(map(id, children), children, strict=True))
            stack.extend(
                (child, level + 1, None) for child in distinct.values() if id(child) not in sizes
            )
        return Measure(sizes[id(value)], self.plain, self.files)

    def part(self, items: Any, children: list[Any], left: int) -> int:
        """Size of the scalars and leaves among `items`; their containers go to `children`."""
        types = set(map(type, items))
        if SCALAR_TYPES.issuperset(types):
            return self.scalars(items, types, len(items), left)
        kinds = set(map(plain_kind, types))
        if None not in kinds:
            flat = self.flat(items, types, kinds, left)
            if flat is None:
                children.extend(items)
                return 0
            return flat
        total = 0
        for item in items:
            cls = item.__class__
            if cls in SCALAR_TYPES:
                total += self.scalar(item)
            elif plain_kind(cls) is not None:
                children.append(item)
            else:
                total += self.leaf(item)
        return total

    def flat(self, items: Any, types: set[type], kinds: set[Any], left: int) -> int | None:
        """Size of the containers `items` if they all hold scalars only (else None), in C.

        Every reference counts in full (``[d] * 1000`` is 1000 dicts): the element count is
        checked first, so a bomb of flat containers stops before its elements are visited.
        """
        count = len(items)
        entries = sum(map(len, items))
        if kinds == {dict}:
            if 2 * entries + count > left:  # every key and value is at least one byte
                return 2 * entries + count
            size = self.records(items, count, entries, left)
            if size is None:
                key_types = set(map(type, chain.from_iterable(items)))
                value_types = set(map(type, chain.from_iterable(map(dict.values, items))))
                if not SCALAR_TYPES.issuperset(key_types | value_types):
                    return None
                size = count * _head(max(map(len, items)))
                size += self.scalars(
                    lambda: chain.from_iterable(items), key_types, entries, left - size
                )
                size += self.scalars(
                    lambda: chain.from_iterable(map(dict.values, items)),
                    value_types,
                    entries,
                    left - size,
                )
        elif dict in kinds:
            return None
        else:
            if entries + count > left:
                return entries + count
            item_types = set(map(type, chain.from_iterable(items)))
            if not SCALAR_TYPES.issuperset(item_types):
                return None
            marked = not kinds.isdisjoint(MARKED_TYPES)
            size = count * (_head(max(map(len, items)) + marked) + 3 * marked)
            size += self.scalars(
                lambda: chain.from_iterable(items), item_types, entries, left - size
            )
        if size < 0:
            return None
        if not RESULT_CONTAINERS.issuperset(types):
            self.plain = False
        return size

    def records(self, items: Any, count: int, entries: int, left: int) -> int | None:
        """Size of `items`, dicts that all have the same str keys, a column of values at a time.

        A column (one key's values) usually has one type, so it takes the C-level passes of
        `scalars` where the mixed values of a whole dict would take a Python step each. None if
        the dicts' keys differ; -1 if a value is not a scalar.
        """
        keys = list(next(iter(items)))
        if entries != count * len(keys) or not _UNIQUE_KEYS.issuperset(map(type, keys)):
            return None  # (equal keys of other types may differ in type, 1 and 1.0)
        size = count * (_head(len(keys)) + sum(map(self.scalar, keys)))
        for key in keys:
            column = list(map(dict.get, items, repeat(key), repeat(_ABSENT)))
            types = set(map(type, column))
            if _Absent in types:
                return None  # a dict lacks the key (so, by the count, has another)
            if not SCALAR_TYPES.issuperset(types):
                return -1
            size += self.scalars(column, types, count, left - size)
            if size > left:
                break
        return size

    def leaf(self, value: Any) -> int:
        """Size of what is neither a scalar nor a container: a File, or something not data."""
        self.plain = False
        if value.__class__ is File:
            self.files = True
            size = (
                4 + self.scalar(value.digest) + self.scalar(value.name) + self.scalar(value.size)
            )  # [mark (3 bytes), digest, name, size(, data)]
            return size if value.data is None else size + self.scalar(value.data)
        if isinstance(value, (bytearray, memoryview)):  # msgpack writes them as bytes
            return _raw_size(memoryview(value).nbytes, False)
        return 1

    def scalars(self, items: Any, types: set[type], count: int, left: int) -> int:
        """Size of `count` scalars of `types`: `items` is a sized iterable of them, or a
        function that makes a fresh iterator over them (each pass calls it again)."""
        make: Callable[[], Any] = items if callable(items) else lambda: items
        if len(types) != 1:
            return _sum_until(map(self.scalar, make()), left)
        (cls,) = types
        if cls in _FIXED_SIZE:
            return _FIXED_SIZE[cls] * count
        if cls is int:
            # bit_length b bounds msgpack's size by 2 + b/4 (1 byte up to 5 bits, 9 up to 63,
            # big ints a byte per 8 bits plus 9): one C pass. Else count the ints per bit
            # length (C), exact when none is negative, else by the larger size of either sign.
            size = 2 * count + (sum(map(int.bit_length, make())) + 3) // 4
            if self.exact or size > left:
                table = _unsigned_size if min(make(), default=0) >= 0 else _bits_size
                size = sum(
                    table(bits) * n for bits, n in Counter(map(int.bit_length, make())).items()
                )
            return size
        chars = sum(map(len, make()))
        if chars + count > left:  # a byte a character and a header byte at least: over already
            return chars + count
        text = cls is str
        if text and not all(map(str.isascii, make())):
            return _sum_until(map(self.scalar, make()), left)
        size = chars + 5 * count  # a byte a character (ASCII), and a header of up to 5
        if self.exact or size > left:  # the headers by length, counted in C
            size = sum(
                _raw_size(length, text) * n for length, n in Counter(map(len, make())).items()
            )
        return size

    def scalar(self, value: Any) -> int:
        """msgpack's exact size for one scalar."""
        cls = value.__class__
        if cls is str and not value.isascii():
            if len(value) <= _RUN:
                return _raw_size(len(value.encode("utf-8", "surrogatepass")), True)
            size = self.texts.get(id(value))
            if size is None:
                size = self.texts[id(value)] = _raw_size(
                    len(value.encode("utf-8", "surrogatepass")), True
                )
            return size
        return _scalar_size(value)


def _sum_until(sizes: Any, left: int) -> int:
    """Sum the iterator `sizes` a run at a time, stopping once the total passes `left`."""
    total = 0
    while total <= left:
        run = list(islice(sizes, _RUN))
        if not run:
            break
        total += sum(run)
    return total


def _head(count: int) -> int:
    """msgpack's header for an array or map of `count` elements."""
    return 1 if count < 16 else 3 if count < 65536 else 5


def _raw_size(size: int, text: bool) -> int:
    """msgpack's size for `size` bytes of str (`text`: up to 31 have a 1-byte header) or bytes."""
    if text and size < 32:
        return size + 1
    return size + (2 if size < 256 else 3 if size < 65536 else 5)


def _unsigned_size(bits: int) -> int:
    """msgpack's size for an int >= 0 of `bits` bits."""
    if bits <= 7:
        return 1
    if bits <= 8:
        return 2
    if bits <= 16:
        return 3
    if bits <= 32:
        return 5
    if bits <= 64:
        return 9
    return 4 + _raw_size((bits + 8) // 8, False)  # [ext mark, big-endian bytes]


def _bits_size(bits: int) -> int:
    """msgpack's largest size for an int of `bits` bits, either sign."""
    if bits <= 5:
        return 1
    if bits <= 7:
        return 2
    if bits <= 15:
        return 3
    if bits <= 31:
        return 5
    if bits <= 63:
        return 9
    return 4 + _raw_size((bits + 8) // 8, False)  # [ext mark, big-endian bytes]


def _scalar_size(value: Any) -> int:
    """msgpack's size for one scalar other than a non-ASCII str (see `_Sizer.scalar`)."""
    cls = value.__class__
    if cls is int:
        if -32 <= value < 128:
            return 1
        if -128 <= value < 256:
            return 2
        if -32768 <= value < 65536:
            return 3
        if -(2**31) <= value < 2**32:
            return 5
        if -(2**63) <= value < 2**64:
            return 9
        return 4 + _raw_size((value.bit_length() + 8) // 8, False)
    if cls is str:
        return _raw_size(len(value), True)
    if cls is bytes:
        return _raw_size(len(value), False)
    return _FIXED_SIZE[cls]


__all__ = ["MARKED_TYPES", "Measure", "expanded_size", "measure"]
