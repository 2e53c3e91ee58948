"""Comparisons priced before they run: ``==``, ``<``, ``in``, ``count``, ``index``, sorting.

CPython compares two containers in one C call that no signal interrupts, visiting a shared
sub-structure once per path to it: two lists built by ``a = [a, a]`` forty times are 2**41
elements to ``==``, and ``[a].count(b)``, ``b in [a]`` or ``sorted([a, b])`` walk the same.
The compiler turns every comparison it cannot prove cheap (by its form, or by what it knows of
a name's kind: `pyzdb.sandbox.operands`) into ``_compare_`` (see
`pyzdb.sandbox.policy.ComparisonRewrites`); the methods and builtins that compare
(`list.count`, `index`, `remove`, `sort`, `sorted`, `min`, `max`) price the same way. The price
is the *expanded* size of the operands (`pyzdb.sandbox.expansion`):

- ``a op b`` walks at most the smaller of the two expansions; it runs if one of them is within
  `Comparisons.walk_limit`, the units one C call may take: what is left of the steps budget,
  and no more than the time left at `WALK_RATE` units a second;
- ``x in seq``, ``seq.count(x)``... compare `x` with each item: at most ``len(seq)`` times the
  expansion of `x`, or the expansion of `seq`;
- ``sorted`` and ``list.sort`` compare each item about ``log2(n)`` times, ``min`` and ``max`` once:
  the items' expansion beyond one unit each, times that factor (one unit an item is the sort
  of ``max_size`` numbers the size budget already allows). Only `CHECKED_ITEMS` items (or
  keys) are checked one by one: a longer input runs unpriced when its `sample` is numbers or
  short texts, and so does a sort, min or max by a key function over more items. Checking
  them all costs as much as the call itself when that is one pass (already in order, min,
  max), and handing checked keys to a sort as much as the key function: what is not priced
  is bounded by the supervisor's kill (security.md, section 2).

Over the limit the request is refused with `LimitExceeded` before the C call runs. Operands that
contain themselves, or are nested deeper than CPython can compare, raise the RecursionError
CPython would (``x = []; x.append(x); y = []; y.append(y); x == y``). Long lists and tuples are
compared a chunk at a time, each chunk priced. Cheap whatever the other side is, so not walked:
a number, None, a str or bytes on either side of ``==``/``<`` (the container's method gives up
at once); two containers of different families; a needle that is a float, None, a bool, an int
under 2**512 or a text shorter than 64, or a haystack that is a set, a dict, a str or a range
(a hash lookup or a substring search, not a scan).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from time import monotonic
from typing import Any, NoReturn

from pyzdb.errors import LimitExceeded
from pyzdb.sandbox.budget import Accounts
from pyzdb.sandbox.expansion import FIXED, SCALARS, UNBOUNDED, expanded, scalar_cost
from pyzdb.sandbox.iteration import ItemsView
from pyzdb.sandbox.kinds import DICT_KEYS, NUMBERS_AND_NONE, SIZED, sized_subclass

#: Units (elements compared, see `pyzdb.sandbox.expansion`) one second of C comparison takes
#: at most: measured 60-100 million a second on the reference machine (``==`` of two lists
#: sharing sub-lists, of lists of records, of long texts), so a walk priced at this rate ends
#: well within the time it was allowed, under load too.
WALK_RATE = 20_000_000
#: Items of two long lists (or tuples) compared, and priced, at a time: from `FIRST_CHUNK`,
#: doubling up to `CHUNK` (lists that differ, differ early more often than not).
FIRST_CHUNK = 16
CHUNK = 1024

#: Values of a sort, min or max checked one by one before it runs (`Comparisons.price_order`).
CHECKED_ITEMS = 64

#: ``==``/``<`` with one of these on either side costs at most its own size: the container on
#: the other side gives up at once (NotImplemented), and two of them compare in one pass.
CHEAP = frozenset(NUMBERS_AND_NONE | {str, bytes})
#: ``x in seq`` with one of these as `x`: constant time per item of `seq`.
NEEDLES = FIXED
#: ``x in c`` with one of these as `c` is a hash lookup, a substring search or arithmetic,
#: never a scan: the store's dict subclasses join on first sight (`Comparisons.contains`).
HAYSTACKS: set[type] = {str, bytes, set, frozenset, dict, DICT_KEYS, range}


def _contains(a: Any, b: Any) -> bool:
    return a in b


def _not_contains(a: Any, b: Any) -> bool:
    return a not in b


#: The operator of each symbol the compiler passes to `_compare_` and `_chain_`.
OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": _contains,
    "not in": _not_contains,
    "is": operator.is_,
    "is not": operator.is_not,
}
_RECURSION = "maximum recursion depth exceeded in comparison"


def small(value: Any) -> bool:
    """Whether `value` compares with any item in constant time: a number of at most 511 bits,
    None, a text shorter than 64, a float.

    >>> small(3), small("abc"), small("x" * 64), small(2**600), small([])
    (True, True, False, False, False)
    """
    cls = type(value)
    if cls in FIXED:
        return True
    if cls is int:
        return value.bit_length() < 512
    return (cls is str or cls is bytes) and len(value) < 64


class Comparisons(Accounts):
    """`_compare_`, `_chain_`/`_link_` (chained comparisons), and the prices the comparing
    methods and builtins share."""

    #: Middle operands of chained comparisons (``a < f() < c``), held between two links; made
    #: by the first (few requests have one: the list is not made for every request).
    _links: list[Any] | None = None

    def compare(self, a: Any, op: str, b: Any) -> Any:
        """`_compare_`: ``a op b`` when the compiler could not prove it cheap."""
        if self.error is not None:
            self.fail(self.error)
        if op == "in":
            return self.contains(b, a)
        if op == "not in":
            return not self.contains(b, a)
        if type(a) in CHEAP or type(b) in CHEAP or a is b or op in ("is", "is not"):
            return OPERATORS[op](a, b)
        family = _settled_at_once(a, b, op)
        if family is None:
            return OPERATORS[op](a, b)
        if family == "sequence" and max(len(a), len(b)) > CHUNK:
            return self._compare_in_chunks(a, op, b)
        self.price_pair(a, b)
        return OPERATORS[op](a, b)

    def _compare_in_chunks(self, a: Any, op: str, b: Any) -> Any:
        """Two long lists (or tuples) compared as CPython does, a chunk of items at a time,
        each chunk priced: the first chunk that differs decides, so two lists that differ
        early cost the walk of the chunks up to there, not of the whole lists (and the tick
        may stop the request between two chunks)."""
        common = min(len(a), len(b))
        start, size = 0, FIRST_CHUNK
        while start < common:
            left, right = a[start : start + size], b[start : start + size]
            self.price_pair(left, right)
            if left != right:  # the first unequal items are in this chunk: they decide
                return OPERATORS[op](left, right)
            start += size
            size = min(2 * size, CHUNK)
        return OPERATORS[op](a[common:], b[common:])  # equal so far: the lengths decide

    def chain(self, a: Any, op: str, b: Any) -> Any:
        """`_chain_`: one link of ``a < b < c`` whose middle operand is not a plain name: `b`
        is held for the next link (`link`) when the comparison is true."""
        result = self.compare(a, op, b)
        if result:
            if self._links is None:
                self._links = []
            self._links.append(b)
        return result

    def link(self) -> Any:
        """`_link_`: the middle operand the previous link held."""
        assert self._links is not None  # the compiler calls it only after a true link
        return self._links.pop()

    def contains(self, haystack: Any, needle: Any) -> bool:
        """``needle in haystack``, priced when it is a scan comparing `needle` with each item."""
        cls = type(haystack)
        if cls in HAYSTACKS or type(needle) in NEEDLES:
            return needle in haystack
        if cls is ItemsView:  # a key lookup, then one comparison of the values
            if not small(needle):
                self.price_search(needle, 1, None)
            return needle in haystack
        if isinstance(haystack, dict):
            HAYSTACKS.add(cls)
            return needle in haystack
        if cls in SIZED or sized_subclass(cls):
            if not small(needle):
                self.price_search(needle, len(haystack), haystack)
            return needle in haystack
        if not hasattr(cls, "__next__") or small(needle):
            return needle in haystack  # not iterable (CPython's TypeError), or cheap per item
        for item in haystack:  # an iterator: each item compared as CPython would, priced
            if item is needle or self.compare(item, "==", needle):
                return True
        return False

    def walk_limit(self) -> tuple[int, str]:
        """Units one C call may still walk, and the budget that bounds them."""
        limit = self.steps_left
        if self.deadline:
            by_time = int((self.deadline - monotonic()) * WALK_RATE)
            if by_time < limit:
                return max(by_time, 0), "time"
        return limit, "steps"

    def price_pair(self, a: Any, b: Any) -> None:
        """Refuse ``a op b`` unless one side's expansion is within the limit."""
        limit, budget = self.walk_limit()
        first = expanded(a, limit)
        if 0 <= first <= limit:
            return
        second = expanded(b, limit)
        if 0 <= second <= limit:
            return
        if first == UNBOUNDED and second == UNBOUNDED:
            raise RecursionError(_RECURSION)
        self._too_long("comparing these values", max(first, second), limit, budget)

    def price_search(self, needle: Any, count: int, haystack: Any) -> None:
        """Refuse comparing `needle` with `count` items of `haystack` (None: not a container)
        unless ``count`` times its expansion, or the expansion of `haystack`, is within the
        limit."""
        limit, budget = self.walk_limit()
        size = expanded(needle, limit)
        if 0 <= size and size * count <= limit:
            return
        whole = limit + 1 if haystack is None else expanded(haystack, limit)
        if 0 <= whole <= limit:
            return
        if size == UNBOUNDED and whole == UNBOUNDED:
            raise RecursionError(_RECURSION)
        units = max(size * count, whole)
        self._too_long("comparing this value with each item", units, limit, budget)

    def price_order(self, values: Sequence[Any], sort: bool) -> None:
        """Refuse sorting `values` (or, not `sort`, finding their min or max) when what the
        items expand to beyond one unit each, times the comparisons each takes part in
        (``log2(n)`` for a sort, one for min/max), passes the limit.

        Numbers and short texts are told in one C pass. Of more than `CHECKED_ITEMS` values,
        only a sample is looked at (`sampled_small`): a whole pass costs as much as the sort
        itself when its input is in order, or as min and max (security.md, section 2).
        """
        if cheap_to_order(values):
            return
        n = len(values)
        types = list(map(type, values))
        kinds = set(types)
        factor = n.bit_length() if sort else 1
        limit, budget = self.walk_limit()
        if kinds <= SCALARS:
            extra = scalar_cost(values, types, kinds)
        else:
            size = expanded(values, limit // factor + n + 1)
            if size == UNBOUNDED:
                raise RecursionError(_RECURSION)
            extra = size - n - 1
        if extra * factor > limit:
            what = "sorting these items" if sort else "min() or max() of these items"
            self._too_long(what, extra * factor, limit, budget)

    def _too_long(self, what: str, units: int, limit: int, budget: str) -> NoReturn:
        left = (
            f"what is left of the steps budget ({limit})"
            if budget == "steps"
            else f"what the time left allows ({limit} at {WALK_RATE} a second)"
        )
        self.fail(
            LimitExceeded(
                f"{what} would compare at least {units} elements in one C call (a part shared "
                f"by several paths counts once per path), over {left}",
                budget,
            )
        )


def cheap_to_order(values: Sequence[Any]) -> bool:
    """Whether sorting `values` (or their min or max) needs no pricing: fewer than two, or
    numbers or short texts (`_small_values`) -- of more than `CHECKED_ITEMS`, the `sample`.

    >>> cheap_to_order([3, 1, 2]), cheap_to_order([[1], [2]]), cheap_to_order([1] * 99 + [[2]])
    (True, False, False)
    """
    n = len(values)
    return n < 2 or _small_values(
        values if n <= CHECKED_ITEMS else (values[0], values[n // 2], values[-1])  # `sample`
    )


def sample(values: Sequence[Any]) -> tuple[Any, Any, Any]:
    """The first, middle and last of `values`: what a long sort, min or max looks at before it
    runs unpriced when they are numbers or short texts (`Comparisons.price_order`)."""
    return values[0], values[len(values) // 2], values[-1]


def sampled_small(values: Sequence[Any]) -> bool:
    """Whether the `sample` of `values` is numbers or short texts.

    >>> sampled_small([1] * 5000), sampled_small([1] * 4999 + [[1]])
    (True, False)
    """
    return _small_values(sample(values))


def _small_values(values: Sequence[Any]) -> bool:
    """Whether `values` are all numbers (floats, bools, ints under about 2**1024) or all texts
    shorter than 64, which compare in a few steps: one C pass each (a float sum refuses
    anything but a number, and ints too big for a float; ``str.__len__`` anything but a str).

    >>> _small_values([3, 2.5, True]), _small_values(["b", "a"]), _small_values([2**2000])
    (True, True, False)
    >>> _small_values(["x" * 64]), _small_values([1, "a"]), _small_values([[1]])
    (False, False, False)
    """
    try:
        sum(values, 0.0)
        return True
    except (TypeError, OverflowError):
        pass
    try:
        return max(map(str.__len__, values)) < 64
    except TypeError:
        return False


#: The container families: each compares only with its own (``[1] == (1,)`` is False at once,
#: both sides giving up; ``[1] < (1,)`` is a TypeError). Every other type a query holds (a
#: range, an iterator, a function, a File, ``d.values()``) compares in constant time.
_FAMILIES = ((list, "list"), (tuple, "tuple"), (dict, "dict"), ((set, frozenset, DICT_KEYS), "set"))


def _family(value: Any) -> str | None:
    if type(value) is ItemsView:
        return "set"
    for kinds, family in _FAMILIES:
        if isinstance(value, kinds):
            return family
    return None


def _settled_at_once(a: Any, b: Any, op: str) -> str | None:
    """None when ``a op b`` is answered without walking either side: not two containers of
    one family, or, for ``==``/``!=``, lists, dicts or sets of different lengths (they check
    the lengths first; tuples do not). Else the family: "sequence" (lists, tuples), "dict" or
    "set".

    >>> _settled_at_once([1], (1,), "<"), _settled_at_once([1], [1, 2], "==")
    (None, None)
    >>> _settled_at_once((1,), (1, 2), "=="), _settled_at_once({1}, {2}, "<")
    ('sequence', 'set')
    """
    family = _family(a)
    if family is None or family != _family(b):
        return None
    if op in ("==", "!=") and family != "tuple" and len(a) != len(b):
        return None
    return "sequence" if family in ("list", "tuple") else family


__all__ = [
    "WALK_RATE",
    "CHUNK",
    "CHECKED_ITEMS",
    "CHEAP",
    "NEEDLES",
    "HAYSTACKS",
    "OPERATORS",
    "small",
    "cheap_to_order",
    "sample",
    "sampled_small",
    "Comparisons",
]
