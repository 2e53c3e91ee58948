"""Builtins that make everyday Python idioms answer as CPython does inside a query.

Why: a query is Python, and code written for Python tests `type(v) is dict`, passes `id` as a
key function by mistake, or writes `iter(it) is it`. Where the sandbox allows the operation,
the answer must be CPython's; where it does not, the refusal must be the same clear
`SecurityError` however the name is reached -- called by name (refused when compiled) or
used as a value (`key=id`, `f = hash; f(x)`: refused when called).

- `type(v)` answers for data values with the query's own builtin of that type: `type(v) is
  dict` and `type(v) in (int, float)` hold, and calling the answer is the guarded
  constructor (`type(r)(10**18)` is priced like `range(10**18)`). A stored dict is a
  `TrackedDict` underneath; it answers `dict`, as it would after a restart. Exceptions answer
  their class. Anything else (a function, an iterator, a File) is refused: its type would be
  a constructor the sandbox does not price. The three-argument form makes a class: refused.
- `x.__name__` (rewritten by the sandbox to `_name_of_(x)`) answers for what `type()` answers,
  the exception classes and the builtins: `type(v).__name__ == 'dict'`. Nothing else.
- The names a query does not have (`id`, `hash`, `open`, ...) are stubs that refuse when
  called, with the message the compiler gives for a direct call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Data types in the order a value is matched (bool before int: bool is a subclass of int).
_DATA_TYPES = (bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset, range)
_NONE_TYPE = type(None)


def idiom_builtins(
    builtins: dict[str, Any],
    exceptions: tuple[type, ...],
    refuse: Callable[[str], Any],
    absent: frozenset[str],
) -> dict[str, Any]:
    """`type` and the refusing stubs, to add to the query builtins `builtins`.

    `refuse(message)` stops the current request with a SecurityError; `absent` are the names
    whose direct calls the compiler refuses.
    """
    answers: dict[type, Any] = {cls: builtins.get(cls.__name__, cls) for cls in _DATA_TYPES}
    answers[_NONE_TYPE] = _NONE_TYPE
    catchable = frozenset(exceptions)

    def type(obj: Any, *rest: Any) -> Any:  # named as the builtin it stands for
        if rest:
            return refuse(
                "type() with three arguments makes a class: classes are not allowed in a query"
            )
        cls = obj.__class__ if isinstance(obj, BaseException) else None
        if cls is not None:
            if cls in catchable:
                return cls
            return refuse(f"type() of a {cls.__name__} is not available in a query")
        for data_type in _DATA_TYPES:
            if isinstance(obj, data_type) and (data_type is not int or not isinstance(obj, bool)):
                return answers[data_type]
        if obj is None:
            return _NONE_TYPE
        return refuse(
            "type() answers for data values (None, bool, int, float, complex, str, "
            "bytes, list, tuple, dict, set, frozenset, range) and exceptions in a "
            "query; isinstance() works for the rest"
        )

    #: What `x.__name__` may read: the answers of type(), the exceptions, the builtins.
    named = {id(value): value for value in (*answers.values(), *exceptions, *builtins.values())}

    def name_of(obj: Any) -> Any:
        """`_name_of_`: the rewrite of ``x.__name__``."""
        if named.get(id(obj)) is obj:
            # ignore: None gets here too (get's default) and raises AttributeError, as in Python
            return obj.__name__  # type: ignore[union-attr]
        return refuse(
            f"__name__ is readable on types and builtins only, not on a value of "
            f"type {obj.__class__.__name__}"
        )

    made: dict[str, Any] = {"type": type, "_name_of_": name_of}
    for name in sorted(absent - {"type"}):
        made[name] = _stub(name, refuse)
    return made


def _stub(name: str, refuse: Callable[[str], Any]) -> Callable[..., Any]:
    message = f"{name}() is not available in a query (see pyzdb.sandbox_rules() or `pyzdb --rules`)"

    def stub(*args: Any, **kwargs: Any) -> Any:
        return refuse(message)

    stub.__name__ = stub.__qualname__ = name
    return stub


__all__ = ["idiom_builtins"]
