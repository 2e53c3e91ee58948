"""Priced replacements for the data types' methods that build or compare in one C call.

Each ``m_<name>(obj)`` is a factory: the attribute guard (`pyzdb.sandbox.attributes`) calls it
with the object and hands the query the function it returns, in place of the bound method.
The function prices what the method would build (a join, a padding, a list extend...) or the
comparisons it would make (``count``, ``index``, ``remove``, ``sort``: see
`pyzdb.sandbox.comparisons`) and then calls the real method, so the store's tracked containers
still record their effects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from operator import is_
from typing import Any

from pyzdb.errors import SecurityError
from pyzdb.sandbox.comparisons import CHECKED_ITEMS, Comparisons, cheap_to_order, small
from pyzdb.sandbox.iteration import ItemsView, Iteration
from pyzdb.sandbox.pricing import Shapes

#: Codecs and error handlers `str.encode`, `bytes.decode`, `str()` and `bytes()` accept: none
#: grows its input more than four times, and a custom handler the host registered could run
#: arbitrary code.
ENCODINGS = frozenset(
    {
        "utf-8",
        "utf8",
        "utf_8",
        "ascii",
        "latin-1",
        "latin1",
        "latin_1",
        "iso-8859-1",
        "utf-16",
        "utf16",
        "utf_16",
        "utf-32",
        "utf32",
        "utf_32",
    }
)
ERROR_HANDLERS = frozenset({"strict", "ignore", "replace"})


def check_codec(encoding: Any, errors: Any) -> None:
    """Refuse codecs and error handlers outside `ENCODINGS`/`ERROR_HANDLERS`.

    >>> check_codec("UTF-8", "strict")
    >>> try:
    ...     check_codec("rot13", "strict")
    ... except SecurityError as exc:
    ...     print(str(exc).split(" (")[0])
    encoding 'rot13' is not available in a query
    """
    if not (isinstance(encoding, str) and encoding.lower() in ENCODINGS):
        raise SecurityError(
            f"encoding {encoding!r} is not available in a query "
            f"(use one of {', '.join(sorted(ENCODINGS))})"
        )
    if errors not in ERROR_HANDLERS:
        raise SecurityError(
            f"error handler {errors!r} is not available in a query (use strict, ignore or replace)"
        )


class Methods(Iteration, Shapes, Comparisons):
    """The method factories (`m_<name>`), and the helpers they share with the builtins."""

    def m_join(self, sep: Any) -> Callable[[Iterable[Any]], Any]:
        def join(iterable: Iterable[Any], /) -> Any:
            items = self.materialize(iterable)
            try:
                total = sum(map(len, items)) + len(sep) * max(len(items) - 1, 0)
            except TypeError:
                return sep.join(items)  # a non-str item: join raises before it allocates
            if total > self.max_size:
                self.too_big(f"a joined {type(sep).__name__}", total)
            return sep.join(items)

        return join

    def m_replace(self, text: Any) -> Callable[..., Any]:
        def replace(old: Any, new: Any, count: int = -1, /) -> Any:
            try:
                n = text.count(old)
                growth = len(new) - len(old)
            except TypeError:
                return text.replace(old, new, count)
            if isinstance(count, int) and count >= 0:
                n = min(n, count)
            if growth > 0 and len(text) + n * growth > self.max_size:
                self.too_big(f"a replaced {type(text).__name__}", len(text) + n * growth)
            return text.replace(old, new, count)

        return replace

    def _padder(self, text: Any, name: str) -> Callable[..., Any]:
        method = getattr(text, name)

        def pad(width: Any, *fill: Any) -> Any:
            if isinstance(width, int) and width > self.max_size:
                self.too_big(f"a padded {type(text).__name__}", width)
            return method(width, *fill)

        pad.__name__ = pad.__qualname__ = name
        return pad

    def m_center(self, text: Any) -> Callable[..., Any]:
        return self._padder(text, "center")

    def m_ljust(self, text: Any) -> Callable[..., Any]:
        return self._padder(text, "ljust")

    def m_rjust(self, text: Any) -> Callable[..., Any]:
        return self._padder(text, "rjust")

    def m_zfill(self, text: Any) -> Callable[..., Any]:
        return self._padder(text, "zfill")

    def m_expandtabs(self, text: Any) -> Callable[..., Any]:
        def expandtabs(tabsize: int = 8) -> Any:
            tab = "\t" if isinstance(text, str) else b"\t"
            if isinstance(tabsize, int):
                size = len(text) + text.count(tab) * max(tabsize, 0)
                if size > self.max_size:
                    self.too_big(f"an expanded {type(text).__name__}", size)
            return text.expandtabs(tabsize)

        return expandtabs

    def m_encode(self, text: str) -> Callable[..., bytes]:
        def encode(encoding: str = "utf-8", errors: str = "strict") -> bytes:
            check_codec(encoding, errors)
            return self.sized_bytes(text.encode(encoding, errors))

        return encode

    def sized_bytes(self, data: bytes) -> bytes:
        """`data`, refused if longer than `max_size` (an encoded text, a ``bytes(s, codec)``)."""
        # The allowed codecs give at most 4 bytes a character, so the result is priced after
        # the fact: pricing first would refuse a long ASCII text that encodes 1:1.
        if len(data) > self.max_size:
            self.too_big("an encoded bytes", len(data))
        return data

    def m_decode(self, data: bytes) -> Callable[..., str]:
        def decode(encoding: str = "utf-8", errors: str = "strict") -> str:
            check_codec(encoding, errors)
            return data.decode(encoding, errors)

        return decode

    def m_extend(self, lst: list[Any]) -> Callable[[Iterable[Any]], None]:
        method = lst.extend  # the store's TrackedList.extend records the effect

        def extend(iterable: Iterable[Any], /) -> None:
            items = self.materialize(iterable)
            if len(lst) + len(items) > self.max_size:
                self.too_big("a list", len(lst) + len(items))
            method(items)

        return extend

    def m_update(self, d: dict[Any, Any]) -> Callable[..., None]:
        method = d.update

        def update(other: Any = (), /, **kwargs: Any) -> None:
            if hasattr(other, "keys"):
                self.check_mapping(other)
            else:
                other = self.check_hashes(self.materialize(other), pairs=True)
            size = len(d) + len(other) + len(kwargs)
            if size > self.max_size:
                self.too_big("a dict", size)
            method(other, **kwargs)

        return update

    def m_items(self, d: dict[Any, Any]) -> Callable[[], ItemsView]:
        return lambda: ItemsView(d.items(), self)

    def m_popitem(self, d: dict[Any, Any]) -> Callable[[], Any]:
        method = d.popitem
        return lambda: self.check_tuple(method())

    def m_count(self, seq: Any) -> Callable[..., Any]:
        return self._searching(seq, "count")

    def m_index(self, seq: Any) -> Callable[..., Any]:
        return self._searching(seq, "index")

    def m_remove(self, seq: Any) -> Callable[..., Any]:
        return self._searching(seq, "remove")

    def _searching(self, seq: Any, name: str) -> Callable[..., Any]:
        """``seq.count(x)``, ``index``, ``remove``: `x` compared with each item, priced first."""
        method = getattr(seq, name)  # a tracked list's own remove records the effect

        def search(*args: Any) -> Any:
            if args and not small(args[0]):
                self.price_search(args[0], len(seq), seq)
            return method(*args)

        search.__name__ = search.__qualname__ = name
        return search

    def m_sort(self, lst: list[Any]) -> Callable[..., None]:
        method = lst.sort

        def sort(*args: Any, key: Any = None, reverse: Any = False) -> None:
            if args:
                return method(*args)  # CPython's TypeError: sort() takes keyword arguments
            if key is None:
                if not cheap_to_order(lst):
                    self.price_order(lst, True)
                return method(reverse=reverse)
            if len(lst) > CHECKED_ITEMS:
                return method(key=key, reverse=reverse)  # keys not looked at (`sorted_copy`)
            items = list(lst)
            keys = list(map(key, items))
            if len(lst) != len(items) or not all(map(is_, lst, items)):
                raise ValueError("list modified during sort")
            self.price_order(keys, True)
            return method(key=_handing_out(keys), reverse=reverse)

        return sort

    def sorted_copy(self, items: list[Any], key: Any, reverse: Any) -> list[Any]:
        """`items` (a fresh list) sorted as ``sorted()`` would, the comparisons priced first.

        With a key function and at most `CHECKED_ITEMS` items, the keys are computed first, as
        CPython does (once an item, in order), priced, and handed to the sort in that order
        (`_handing_out`). A longer sort by a key runs unpriced: handing the keys out costs
        about as much as the key function itself (security.md, section 2)."""
        if key is None:
            if not cheap_to_order(items):
                self.price_order(items, True)
            items.sort(reverse=reverse)
            return items
        if len(items) > CHECKED_ITEMS:
            items.sort(key=key, reverse=reverse)
            return items
        keys = list(map(key, items))
        self.price_order(keys, True)
        items.sort(key=_handing_out(keys), reverse=reverse)
        return items

    def iterable_args(self, obj: Any, name: str) -> Callable[..., Any]:
        """A set method taking iterables (``s.union(it, ...)``): each is materialized first."""
        method = getattr(obj, name)

        def call(*others: Any) -> Any:
            return method(*(self.check_hashes(self.materialize(other)) for other in others))

        call.__name__ = call.__qualname__ = name
        return call


def _handing_out(keys: list[Any]) -> Callable[[Any], Any]:
    """A key function that returns `keys` one after the other, whatever item it is given.

    CPython's sort calls its key once an item, in order, before it compares anything, so the
    keys computed (and priced) beforehand reach it in the order they were computed. In C:
    ``next(it, item)``.

    >>> key = _handing_out(["b", "a"])
    >>> key(1), key(2)
    ('b', 'a')
    """
    return partial(next, iter(keys))


__all__ = ["ENCODINGS", "ERROR_HANDLERS", "check_codec", "Methods"]
