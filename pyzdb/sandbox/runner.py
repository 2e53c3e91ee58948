"""Running a compiled request: bind the caller's names, arm the limits, evaluate, translate.

``run(compiled, names, budget)`` builds fresh globals (guards of a new
`pyzdb.sandbox.request.Request`, the shared builtins table, the caller's names), lowers the
recursion limit and arms the time/memory tick (`pyzdb.sandbox.timers`), evaluates, disarms, and
turns whatever escaped into an `Exception` with a ``query line L, column C: ...`` note
(`pyzdb.sandbox.annotate`). See sandbox/README.md for the threat model and every rule with its
reason.
"""

from __future__ import annotations

import keyword
from typing import TYPE_CHECKING, Any

from pyzdb.errors import SecurityError
from pyzdb.sandbox.annotate import translate
from pyzdb.sandbox.budget import Budget
from pyzdb.sandbox.iteration import ItemsView
from pyzdb.sandbox.operands import check_assumptions
from pyzdb.sandbox.request import Request
from pyzdb.sandbox.timers import Limits

if TYPE_CHECKING:
    from pyzdb.sandbox.compile import Compiled


def run(compiled: Compiled, names: dict[str, object], budget: Budget) -> object:
    """Evaluate `compiled` with `names` bound, within `budget`; return its value.

    Exec mode returns the value of the last top-level expression statement, else None. The
    query's own exceptions come out as the same built-in type with the same (bounded) args and
    a note ``query line L, column C: <line>`` (attributes `pyzdb_line`, `pyzdb_column`);
    pyzdb errors raised inside (the store's SecurityError) come out unchanged with the note;
    refusals are `SecurityError`, overruns `LimitExceeded` (MemoryError becomes
    ``LimitExceeded(budget="memory")``); any other BaseException becomes `Error`. Nothing but
    an `Exception` escapes. The result's size is left to the engine, which detaches it within
    `Budget.max_result` (`pyzdb.engine.Engine.detach`).

    >>> from pyzdb.sandbox.compile import compile_request
    >>> run(compile_request("sum(x * x for x in xs)", "eval"), {"xs": [1, 2, 3]}, Budget())
    14
    """
    if _LEFTOVERS:
        _LEFTOVERS.clear()  # `release_leftovers`, inlined: this is every request's path
    request = Request(budget)
    scope = request.make_globals()
    for name, value in names.items():
        if (
            type(name) is not str
            or not name.isidentifier()
            or name.startswith("_")
            or keyword.iskeyword(name)
        ):
            raise SecurityError(
                f"cannot bind {name!r} in a query: names are identifiers that do not start with '_'"
            )
        scope[name] = value
    if compiled.assumes:
        check_assumptions(compiled.assumes, scope, names)
    error: Exception | None = None
    value = None
    try:
        with Limits(request):
            if compiled.mode == "eval":
                value = eval(compiled.code, scope)  # running the query is the point of this module
            else:
                exec(compiled.code, scope)
                value = scope.get("_result_")
            if type(value) is ItemsView:
                value = value.view
    except BaseException as exc:  # the boundary: everything is translated
        error = translate(exc, request, compiled.source)
        _LEFTOVERS.append(exc)  # its frames hold the query's locals
    _LEFTOVERS.append(scope)
    if error is not None:
        raise error  # outside the except block: no __context__ chaining to the query's frames
    return value


#: What the last evaluation left behind (its globals; the exception whose frames hold its
#: locals). Freeing a structure the query built -- up to the memory budget, millions of
#: objects -- is one long C call; it happens in `release_leftovers`, which the server calls
#: once the request is answered and off the supervisor's clock, and `run` calls before the
#: next evaluation's budget starts.
_LEFTOVERS: list[Any] = []


def release_leftovers() -> None:
    """Free what the last evaluation left behind (see `_LEFTOVERS`)."""
    _LEFTOVERS.clear()


__all__ = ["run", "release_leftovers"]
