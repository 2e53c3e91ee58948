"""`str.format` and `str.format_map` in a query, under the rules of f-strings.

Why they were refused: CPython's `str.format` resolves `{0.__class__.__mro__}` by plain
attribute access in C, below every guard, and pads `{0:>999999999}` in one allocation. Both
are useful, though, and people write them first. Here they run through `string.Formatter`
with each step routed through the sandbox:

- an attribute in a field (`{0.real}`) goes through the attribute guard (`_getattr_`), so only
  the table's attributes of data types are reachable -- the same as `x.real` in the query;
- an index in a field (`{0[name]}`, `{0[2]}`) is plain item access on data, as in CPython;
- each field is converted and formatted by the f-string guards (`to_text`, `fmtval`), so
  widths and precisions are priced before they allocate, and the whole result is priced as it
  grows, so `'{0:9999999}' * 1000` fails on its size instead of building gigabytes.
"""

from __future__ import annotations

import _string  # the C helpers string.Formatter itself uses
import string
from collections.abc import Mapping, Sequence
from typing import Any


class QueryFormatter(string.Formatter):
    """A `string.Formatter` whose every lookup and conversion goes through one request's
    guards (`pyzdb.sandbox.request.Request`)."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.total = 0

    def get_field(
        self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[Any, Any]:
        first, rest = _string.formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attribute, key in rest:
            obj = self.request.getattr(obj, key) if is_attribute else obj[key]
        return obj, first

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is None:
            return value
        if conversion in ("s", "r", "a"):
            return self.request.to_text(value, conversion)
        raise ValueError(f"Unknown conversion specifier {conversion}")

    def format_field(self, value: Any, format_spec: str) -> str:
        text = self.request.fmtval(value, -1, format_spec)
        self.total += len(text)
        if self.total > self.request.max_size:
            self.request.too_big("a formatted string", self.total)
        return text


def format_method(request: Any, template: str) -> Any:
    """`template.format` as a query sees it."""

    def format(*args: Any, **kwargs: Any) -> str:  # named as the method it stands for
        return QueryFormatter(request).vformat(template, args, kwargs)

    return format


def format_map_method(request: Any, template: str) -> Any:
    """`template.format_map` as a query sees it."""

    def format_map(mapping: Mapping[str, Any], /) -> str:
        return QueryFormatter(request).vformat(template, (), mapping)

    return format_map


__all__ = ["QueryFormatter", "format_method", "format_map_method"]
