"""Iteration and materialisation: the steps account, and how deep iterators may nest.

Nothing the query can call loops in C over a source the budget does not bound. Every sized
object (list, dict, str, range...) is at most `Budget.max_size` long when a constructor builds
it, and its length is charged to the *steps* account up front; every other iterable is wrapped
in ``compress(it, shared)``, where ``shared`` is one ``islice(count(), steps)`` per request:
each item taken anywhere advances it, in C, so the count is exact and costs no Python call per
item. When it runs dry a tail check stops the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import chain, compress, islice, repeat
from typing import TYPE_CHECKING, Any

from pyzdb.sandbox.budget import Accounts, current_request
from pyzdb.sandbox.kinds import SIZED, sized_subclass

if TYPE_CHECKING:
    from pyzdb.sandbox.methods import Methods

#: Deepest nesting of iterator wrappers (a map of a filter of a zip of an iter of ...) a query
#: may build. Advancing the outer one calls each inner one's `__next__` in C with no recursion
#: check: ~200,000 levels overflow the C stack (SIGSEGV). A generator expression in between
#: is a Python frame, which the recursion limit bounds instead.
MAX_ITER_DEPTH = 500


class ItemsView:
    """``dict.items()`` as a query sees it: each pair it hands out has its depth checked.

    Iterating a real items view makes a fresh ``(key, value)`` tuple per item in C, so a loop
    that re-wraps a value as ``{0: p}.items()`` would nest tuples without any guard. A ``for
    k, v in d.items()`` loop unpacks at once and gets the raw view (`Iteration.getiter`).
    """

    __slots__ = ("view", "request")

    def __init__(self, view: Any, request: Methods) -> None:
        self.view = view
        self.request = request

    def __iter__(self) -> Iterator[Any]:
        return map(self.request.check_tuple, self.view)

    def __reversed__(self) -> Iterator[Any]:
        return map(self.request.check_tuple, reversed(self.view))

    def __len__(self) -> int:
        return len(self.view)

    def __contains__(self, item: object) -> bool:
        return item in self.view

    def __eq__(self, other: object) -> bool:
        return self.view == (other.view if type(other) is ItemsView else other)

    # ignore: unhashable as a dict view is; typeshed spells it so too, mypy wants a method
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self.view)

    def _pairs(self, other: Any) -> tuple[set[Any], set[Any]]:
        return set(self), set(self.request.materialize(other))

    def __and__(self, other: Any) -> set[Any]:
        mine, theirs = self._pairs(other)
        return mine & theirs

    def __or__(self, other: Any) -> set[Any]:
        mine, theirs = self._pairs(other)
        return mine | theirs

    def __xor__(self, other: Any) -> set[Any]:
        mine, theirs = self._pairs(other)
        return mine ^ theirs

    def __sub__(self, other: Any) -> set[Any]:
        mine, theirs = self._pairs(other)
        return mine - theirs

    def __rsub__(self, other: Any) -> set[Any]:
        mine, theirs = self._pairs(other)
        return theirs - mine

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__


SIZED.add(ItemsView)


class Checked:
    """A `zip`/`enumerate` iterator whose tuples are depth-checked unless unpacked at once."""

    __slots__ = ("raw", "check", "depth")

    def __init__(self, raw: Iterator[Any], check: Callable[[Any], Any], depth: int = 1) -> None:
        self.raw = raw
        self.check = check
        self.depth = depth

    def __iter__(self) -> Iterator[Any]:
        return nested(NestedMap(self.check, self.raw), self.depth)

    def __next__(self) -> Any:
        return self.check(next(self.raw))


class NestedChain(chain):
    """`Iteration.lazy_iter`'s iterator: C speed, and it knows how deep iterators nest in it."""

    __slots__ = ("depth",)


class NestedMap(map):
    __slots__ = ("depth",)


class NestedFilter(filter):
    __slots__ = ("depth",)


_NESTED = frozenset({NestedChain, NestedMap, NestedFilter, Checked})


def nested(wrapper: Any, depth: int) -> Any:
    """`wrapper`, marked as nesting iterators `depth` deep."""
    wrapper.depth = depth
    return wrapper


def nest_depth(sources: Iterable[Any]) -> int:
    """Depth of a new wrapper of `sources`: one more than the deepest (plain data is 0, an
    iterator of unknown kind 1); over `MAX_ITER_DEPTH` the request is refused."""
    depth = 0
    for source in sources:
        cls = type(source)
        if cls in _NESTED:
            inner = source.depth
        elif cls in SIZED:
            continue
        else:
            inner = 1
        if inner > depth:
            depth = inner
    if depth >= MAX_ITER_DEPTH:
        current_request().refuse(
            f"iterators nested more than {MAX_ITER_DEPTH} deep are refused "
            "(advancing them would overflow the C stack)"
        )
    return depth + 1


class Iteration(Accounts):
    """The guards of loops, unpacking and the builtins that read an iterable: the steps account."""

    def lazy_iter(self, obj: Any) -> Iterator[Any]:
        """Iterate `obj` drawing one step per item from the shared account, at C speed."""
        return nested(NestedChain(compress(obj, self.lazy), self._tail()), nest_depth((obj,)))

    def lazy_head(self, obj: Any, n: int) -> tuple[list[Any], Iterator[Any], Iterator[Any]]:
        """`lazy_iter` of `obj` with its first `n` items read ahead: (those items, an iterator
        of the rest, an iterator of them all), each one C chain deep as `lazy_iter` is."""
        depth = nest_depth((obj,))
        counted = compress(obj, self.lazy)
        head = list(islice(counted, n))
        tail = self._tail()
        return (
            head,
            nested(NestedChain(counted, tail), depth),
            nested(NestedChain(head, counted, tail), depth),
        )

    def _tail(self) -> Iterator[Any]:
        # Reached when compress stops: either `obj` ran out, or the account did.
        if next(self.lazy, None) is None:
            self.steps_exceeded()
        return
        yield  # a generator: runs only when chain reaches it

    def getiter(self, obj: Any, unpacked: bool = False) -> Any:
        """`_getiter_`: every for loop and comprehension. `unpacked`: the target is a tuple."""
        if self.error is not None:
            self.fail(self.error)
        cls = type(obj)
        if cls in SIZED or sized_subclass(cls):
            n = len(obj)
            if n <= self.steps_left:
                self.steps_left -= n
                if unpacked and cls is ItemsView:
                    return obj.view
                return obj
        elif unpacked and cls is Checked:
            return obj.raw
        return self.lazy_iter(obj)

    def consume(self, obj: Any) -> Any:
        """For builtins that read everything (sum, min, max): a long sized input fails at once."""
        cls = type(obj)
        if cls in SIZED or sized_subclass(cls):
            n = len(obj)
            if n > self.steps_left:
                self.steps_exceeded()
            self.steps_left -= n
            return obj
        return self.lazy_iter(obj)

    def materialize(self, obj: Any) -> Any:
        """`obj`, or a list of its items, of at most `max_size` items: safe to build from in C."""
        cls = type(obj)
        if cls in SIZED or sized_subclass(cls):
            n = len(obj)
            if n > self.max_size:
                self.too_big(f"a {cls.__name__} copy", n)
            if n > self.steps_left:
                self.steps_exceeded()
            self.steps_left -= n
            return obj
        items = list(islice(self.lazy_iter(obj), self.max_size + 1))
        if len(items) > self.max_size:
            self.too_big("a collection", len(items))
        return items

    def starred(self, obj: Any) -> Any:
        """`_starred_`: ``[*x]``, ``(*x,)``, ``f(*x)``: CPython unpacks in C before any call."""
        if self.error is not None:
            self.fail(self.error)
        return self.materialize(obj)

    def unpack(self, value: Any, spec: tuple[tuple[int, Any], ...]) -> list[Any]:
        """`_unpack_`: a target with a starred name (``a, *b = x``) collects items in C."""
        if self.error is not None:
            self.fail(self.error)
        items = list(self.materialize(value))
        n = len(items)
        for index, child in spec:
            if -n <= index < n:
                items[index] = self.unpack(items[index], child)
        return items

    def iter_unpack(self, iterable: Any, spec: tuple[tuple[int, Any], ...]) -> Iterator[Any]:
        """`_iter_unpack_`: ``for a, *b in x``: each item is unpacked as in `unpack`."""
        return map(self.unpack, self.getiter(iterable, True), repeat(spec))


__all__ = [
    "MAX_ITER_DEPTH",
    "ItemsView",
    "Checked",
    "NestedChain",
    "NestedMap",
    "NestedFilter",
    "nested",
    "nest_depth",
    "Iteration",
]
