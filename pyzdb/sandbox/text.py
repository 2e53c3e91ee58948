"""Text built from a query's values, priced before it is built: str(), repr(), f-strings.

A conversion is preceded by a walk that estimates the length of the text (`Text.text_size`),
so a value that is small in memory but enormous as text is refused before CPython formats
it, and anything that is not data shows as ``<type>`` instead of a repr with an address.
"""

from __future__ import annotations

import re
from typing import Any

from pyzdb.sandbox.budget import Accounts
from pyzdb.sandbox.iteration import ItemsView
from pyzdb.sandbox.kinds import NUMBERS_AND_NONE, SIZED, sized_subclass
from pyzdb.values import File

_DIGITS = re.compile(r"\d+")


class Text(Accounts):
    """The text guards: the length estimate, str/repr, and the pieces of an f-string."""

    def text_size(self, obj: Any, kind: str = "s", limit: int | None = None) -> int:
        """An upper estimate of ``len(str(obj))`` (or repr), walking at most `limit` units."""
        return self._text_walk(obj, kind, self.max_size if limit is None else limit)[0]

    def _text_walk(self, obj: Any, kind: str, limit: int) -> tuple[int, bool]:
        """(estimated length of the text of `obj`, whether it holds only data).

        A walk, not a conversion: a list holding one 10 MB string a million times, or lists
        nested as a DAG (``a = [a, a]`` forty times), take little memory but enormous text. The
        walk stops as soon as the estimate passes `limit` (each container visit adds to it, so
        a DAG cannot keep it walking).
        """
        total, data, stack = 0, True, [obj]
        quote = 1 if kind == "s" else 4  # repr of a str escapes a byte into up to four chars
        while stack:
            item = stack.pop()
            cls = type(item)
            if cls is str:
                total += quote * len(item) + 2
            elif cls is bytes:
                total += 4 * len(item) + 3
            elif cls is int or cls is bool:
                total += item.bit_length() // 3 + 2
            elif cls in NUMBERS_AND_NONE or cls is range:
                total += 32
            elif cls in SIZED or sized_subclass(cls):
                total += 2 + 2 * len(item)
                if total > limit:
                    return total, data
                if isinstance(item, dict):
                    stack.extend(item.keys())
                    stack.extend(item.values())
                else:
                    stack.extend(item.view if cls is ItemsView else item)
            elif isinstance(item, BaseException):
                total += 16
                stack.extend(item.args)
            else:
                total += 64
                data = data and cls is File
            quote = 4  # inside a container every str is shown with repr
            if total > limit:
                return total, data
        return total, data

    def to_text(self, obj: Any, kind: str = "s") -> str:
        """str/repr/ascii of `obj`, refused when it would pass `max_size`.

        Objects that are not data (functions, iterators, methods) show as ``<type>``: CPython's
        own repr would print their address, which helps an attacker defeat ASLR.
        """
        cls = type(obj)
        if cls is str and kind == "s":
            text: str = obj
            return text
        size, data = self._text_walk(obj, kind, self.max_size)
        if size > self.max_size:
            self.too_big("a string", size)
        if not data:
            return f"<{cls.__name__}>"
        show = str if kind == "s" else repr if kind == "r" else ascii
        return show(obj)

    def is_data(self, obj: Any, limit: int) -> bool:
        """Whether the text of `obj` is at most `limit` long and shows only data."""
        size, data = self._text_walk(obj, "r", limit)
        return data and size <= limit

    def fmtval(self, value: Any, conversion: int, spec: str | None) -> str:
        """`_fmtval_`: one ``{value!conversion:spec}`` of an f-string."""
        if self.error is not None:
            self.fail(self.error)
        if conversion != -1:
            value = self.to_text(value, chr(conversion))
        if not spec:
            return self.to_text(value)
        for digits in _DIGITS.findall(spec):
            if len(digits) > 9 or int(digits) > self.max_size:
                self.too_big("a formatted field", int(digits[:12]))
        if isinstance(value, int) and value.bit_length() > self.max_size:
            self.too_big("a formatted int", value.bit_length())
        return format(value, spec)

    def fstr(self, *parts: str) -> str:
        """`_fstr_`: an f-string's pieces, joined once their total length is known."""
        total = sum(map(len, parts))
        if total > self.max_size:
            self.too_big("an f-string", total)
        return "".join(parts)


__all__ = ["Text"]
