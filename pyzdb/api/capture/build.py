"""`capture`: a string, a lambda or a def, and the caller's parameters, become a `Request`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import FunctionType

from pyzdb.api.capture.freevars import check_data, check_param_name, describe_object, free_values
from pyzdb.api.capture.functions import find_template
from pyzdb.api.capture.request import CaptureError, Mode, Request, Syntax
from pyzdb.api.capture.text import checked_source
from pyzdb.limits import ROOT_NAME


def capture(
    expr_or_fn: str | Callable[..., object],
    mode: Mode,
    params: Mapping[str, object] | None = None,
) -> Request:
    """Build the `Request` for `db.query(...)` / `db.execute(...)`.

    `expr_or_fn` is a source string, a lambda or a def taking the root as its only parameter.
    `params` (the caller's `**params`) add to, and override, the captured free variables.
    Raises `SyntaxError` for bad syntax, `CaptureError` when there is no usable source or a name
    is not allowed, `UnshippableValue` when a free variable or parameter is not data.

    >>> capture("db['users'][n]", "query", {"n": 2})
    Request(mode='query', syntax='eval', source="db['users'][n]", params={'n': 2}, root='db')
    >>> capture(lambda d: d["users"][-1], "execute").source
    'd["users"][-1]'
    """
    if mode not in ("query", "execute"):
        raise ValueError(f"mode must be 'query' or 'execute', not {mode!r}")
    explicit = dict(params or {})
    own_name = None
    if isinstance(expr_or_fn, str):
        syntax: Syntax = "eval" if mode == "query" else "exec"
        source = checked_source(expr_or_fn, syntax)
        root, captured = ROOT_NAME, {}  # a lambda or def names its own root
    elif isinstance(expr_or_fn, FunctionType):
        template = find_template(expr_or_fn, mode)
        syntax, source, root, own_name = (
            template.syntax,
            template.source,
            template.root,
            template.own_name,
        )
        captured = free_values(expr_or_fn, template, explicit, mode)
    else:
        raise TypeError(
            f"db.{mode}() takes a source string, a lambda or a def function, "
            f"not {describe_object(expr_or_fn)}"
        )
    for name, value in explicit.items():
        check_param_name(name, root)
        if name == own_name:
            raise CaptureError(f"parameter name {name!r} is the name of the shipped function")
        check_data(f"parameter {name!r}", name, value, "")
    return Request(mode, syntax, source, {**captured, **explicit}, root)


__all__ = ["capture"]
