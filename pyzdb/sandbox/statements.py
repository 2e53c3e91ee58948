"""The guards of the statements the compiler rewrites: item and slice writes, augmented
assignment, calls with ``*args``/``**kwargs``, and ``except`` clauses.

A refusal or overrun raises `pyzdb.sandbox.budget.Stop`, a BaseException: ``except Exception``
cannot catch it, the compiler refuses ``finally`` and bare ``except``, and each ``except``
clause runs `StatementGuards.catch` first, which re-raises a pending stop. Every guard call
re-raises it too.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from pyzdb.sandbox.attributes import AttributeGuard
from pyzdb.sandbox.kinds import CATCHABLE, IMMUTABLE, SEQUENCES
from pyzdb.sandbox.pricing import Arithmetic

_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}


class StatementGuards(AttributeGuard, Arithmetic):
    """`_write_`, `_setslice_`, `_apply_`, `_catch_`, `_inplacevar_` and `_augitem_`."""

    def write(self, obj: Any) -> Any:
        """`_write_`: ``obj[k] = v`` and ``del obj[k]``: only dicts and lists.

        The store's containers record their own effects and refuse writes in a read-only query;
        this guard hands them back unchanged.
        """
        if self.error is not None:
            self.fail(self.error)
        if not isinstance(obj, (dict, list)):
            if type(obj) in IMMUTABLE:
                raise TypeError(f"{type(obj).__name__!r} object does not support item assignment")
            self.refuse(f"cannot assign to items of a {type(obj).__name__}")
        return obj

    def setslice(self, container: Any, key: Any, value: Any) -> None:
        """`_setslice_`: ``l[i:j] = value`` assigns from an iterable that CPython reads in C.

        Only lists take a slice: a slice as a dict key (hashable from Python 3.12) would later
        come back from iteration as a slice object the compiler never saw.
        """
        if self.error is not None:
            self.fail(self.error)
        if isinstance(container, dict):
            self.refuse("a slice cannot be a dict key in a query")
        self.write(container)[key] = self.materialize(value)

    def apply(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`_apply_`: a call with ``*args``/``**kwargs`` (the star operand went through
        `starred` already)."""
        if self.error is not None:
            self.fail(self.error)
        return func(*args, **kwargs)

    def catch(self, thunk: Callable[[], Any]) -> Any:
        """`_catch_`: evaluates an ``except`` clause's classes after re-raising a pending stop.

        The class expression runs inside a lambda only now, so an expression that raises (an
        undefined name) cannot replace a `Stop` that is passing through.
        """
        if self.error is not None:
            self.fail(self.error)
        spec = thunk()
        if type(spec) is tuple:
            if all(type(c) is type and c in CATCHABLE for c in spec):
                return spec
        elif type(spec) is type and spec in CATCHABLE:
            return spec
        raise TypeError(
            "catching classes that do not inherit from BaseException is not "
            "allowed (a query may catch the built-in exception classes only)"
        )

    def inplace(self, op: str, x: Any, y: Any) -> Any:
        """`_inplacevar_`: ``x op= y`` for a name, with the sizes of `mul`/`pow` and friends.

        A list grows with ``x.extend`` / ``x.__imul__`` and a dict with ``x.update``, so the
        store's tracked containers (which override them) record the change.
        """
        if self.error is not None:
            self.fail(self.error)
        if op == "+=":
            if isinstance(x, list):
                self.priced_method(x, "extend")(y)
                return x
            if (
                isinstance(x, SEQUENCES)
                and isinstance(y, SEQUENCES)
                and len(x) + len(y) > self.max_size
            ):
                self.too_big(f"a {type(x).__name__}", len(x) + len(y))
            return x + y
        if op == "*=":
            if isinstance(x, list) and isinstance(y, int):
                self.price_mul(x, y)
                return x.__imul__(y)
            return self.mul(x, y)
        if op == "|=" and isinstance(x, dict):
            self.priced_method(x, "update")(y)
            return x
        if op == "**=":
            return self.pow(x, y)
        if op == "<<=":
            return self.lshift(x, y)
        if op == "%=":
            return self.mod(x, y)
        return _INPLACE[op](x, y)

    def augitem(self, container: Any, key: Any, op: str, value: Any) -> None:
        """`_augitem_`: ``c[k] op= v`` with `c` and `k` evaluated once.

        Reads ``c[k]``, applies `inplace`, and writes back through the normal item write. The
        write is skipped when the item is the very list/dict it was (``+=`` on a stored list
        extends it), so the store records the extend rather than a copy of the whole list; a
        slice is a copy, so it is always written back.
        """
        old = container[key]
        new = self.inplace(op, old, value)
        if new is not old or type(key) is slice or not isinstance(container, (dict, list)):
            self.write(container)[key] = new


__all__ = ["StatementGuards"]
