"""One evaluation's state and guards: the `Request`, assembled from the guard mixins.

RestrictedPython rewrites a query's syntax into calls of guard names (``a.b`` becomes
``_getattr_(a, 'b')``, ``for x in y`` becomes ``for x in _getiter_(y)``) and
`pyzdb.sandbox.policy` adds its own rewrites (``s * n`` becomes a type check or
``_mul_(s, n)``, a tuple display ``_tuple_(...)``, an f-string ``_fstr_(...)``). A `Request`
supplies every one of them as a bound method, in the fresh globals of that request only.

Each mixin has one job and lives in its own module; they share the state `Request.__init__`
sets (each declares what it reads):

- `budget.Accounts`: what is left of the budget, the sticky stop, the tick;
- `iteration.Iteration`: loops, unpacking, materialising (the steps account);
- `pricing.Shapes`: tuple depth and size, hash collisions, set and dict displays;
- `comparisons.Comparisons`: ``==``, ``<``, ``in``, ``count``, sorting priced by what they walk;
- `text.Text`: str/repr/f-strings priced before they are built;
- `pricing.Arithmetic`: ``*``, ``**``, ``<<``, ``%`` priced before they run;
- `methods.Methods`: the size-priced method factories;
- `attributes.AttributeGuard`: ``_getattr_`` and its table;
- `statements.StatementGuards`: item writes, slices, augmented assignment, calls, ``except``.
"""

from __future__ import annotations

import operator
import sys
from itertools import count, islice
from typing import Any

from pyzdb.sandbox.budget import Budget, current_request
from pyzdb.sandbox.builtins import BUILTINS
from pyzdb.sandbox.comparisons import CHEAP, HAYSTACKS, NEEDLES
from pyzdb.sandbox.statements import StatementGuards


class Request(StatementGuards):
    """The state and the guards of one evaluation; `pyzdb.sandbox.runner.run` makes one per
    request.

    >>> request = Request(Budget(max_size=10))
    >>> request.getiter([1, 2, 3]), request.steps_left == Budget().steps - 3
    ([1, 2, 3], True)
    """

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.max_size = budget.max_size
        self.max_bits = budget.max_size * 8
        self.steps_left = budget.steps
        self.lazy = islice(count(1), budget.steps)
        self.error = None
        self.deadline = 0.0
        self.memory_base = None
        self.fired = False
        self._tuples = {}
        self._keep = []

    def make_globals(self) -> dict[str, Any]:
        """The guard names the compiled code refers to, and the builtins table."""
        return {
            "__builtins__": QUERY_BUILTINS,
            "__name__": "pyzdb.query",
            "_getattr_": self.getattr,
            "_getitem_": operator.getitem,  # reads of data are safe: C speed, CPython's errors
            "_write_": self.write,
            "_getiter_": self.getiter,
            "_iter_unpack_": self.iter_unpack,
            "_unpack_": self.unpack,
            "_inplacevar_": self.inplace,
            "_augitem_": self.augitem,
            "_apply_": self.apply,
            "_starred_": self.starred,
            "_setslice_": self.setslice,
            "_mul_": self.mul,
            "_mod_": self.mod,
            "_pow_": self.pow,
            "_lshift_": self.lshift,
            "_tuple_": self.tuple_,
            "_compare_": self.compare,
            "_args_": self.varargs,
            "_fstr_": self.fstr,
            "_fmtval_": self.fmtval,
            "_catch_": self.catch,
            "_slice_": slice,
            "_type_": type,
            "_int_": int,
            "_float_": float,
        }


#: The builtins table of the compiled code: a query's `BUILTINS`, plus the guards and constants
#: that few requests reach, found there without a bound method made for every request (a
#: query cannot name them: names starting with '_' are refused).
QUERY_BUILTINS: dict[str, Any] = {
    **BUILTINS,
    "_chain_": lambda a, op, b: current_request().chain(a, op, b),
    "_link_": lambda: current_request().link(),
    "_set_": lambda items: current_request().set_display(items),
    "_dict_": lambda spec, values: current_request().dict_display(spec, values),
    "_cheap_": CHEAP,
    "_needles_": NEEDLES,
    "_haystacks_": HAYSTACKS,
}

#: The modules whose code runs on a request's own state: the tick may raise a stop in their
#: frames (and in the query's), never in the store's code, where a stop could land between a
#: change and its undo record.
GUARD_MODULES = tuple(
    f"pyzdb.sandbox.{name}"
    for name in (
        "attributes",
        "budget",
        "builtins",
        "comparisons",
        "expansion",
        "iteration",
        "kinds",
        "methods",
        "pricing",
        "request",
        "statements",
        "text",
    )
)
GUARD_FILES = frozenset(str(sys.modules[name].__file__) for name in GUARD_MODULES)


__all__ = ["Request", "QUERY_BUILTINS", "GUARD_MODULES", "GUARD_FILES"]
