"""Free variables and parameters: collect what a request names, and refuse what is not data.

**Free variables** (closure cells, and the globals the code loads that exist in its module) are
shipped by value as parameters. Only data travels; anything else is refused here, naming the
variable and where inside it the culprit sits. Builtins are not parameters: the server supplies
its own table. Explicit parameters (``db.query("...", name=value)``) get the same checks.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import io
import keyword
import sys
import unicodedata
from collections.abc import Mapping
from types import FunctionType, MethodType, ModuleType

from pyzdb.api.capture.functions import Template, describe_function
from pyzdb.api.capture.request import CaptureError, Mode, UnshippableValue
from pyzdb.limits import MAX_DEPTH, ROOT_NAME, SCALAR_TYPES

#: The module that defines `pyzdb.File`. Capture recognises a File through it, without importing
#: it: the client's capture path stays free of the data model (tests/test_capture.py checks that
#: this is `File.__module__`).
FILE_MODULE = "pyzdb.values"

_CONTAINERS = frozenset({tuple, list, dict, set, frozenset})
_MISSING = object()


def check_param_name(name: object, root: str = ROOT_NAME) -> None:
    """Refuse a parameter name the server could not bind or the query could not spell.

    A name must be an identifier in NFKC form (the tokenizer normalises names in the source, so
    `ﬁ` in a query means `fi`), not a keyword, not start with `_` (the sandbox refuses such
    names: they reach dunders), and not be the root's name (it would hide the database).
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise CaptureError(f"parameter name {name!r} is not a Python identifier")
    if unicodedata.normalize("NFKC", name) != name:
        normal = unicodedata.normalize("NFKC", name)
        raise CaptureError(f"parameter name {name!r} is spelled {normal!r} in a query; use that")
    if name.startswith("_"):
        raise CaptureError(
            f"parameter name {name!r} starts with '_': the server refuses such names; rename it"
        )
    if name == root:
        raise CaptureError(f"parameter name {name!r} is the name of the database root")


def free_values(
    fn: FunctionType, template: Template, explicit: Mapping[str, object], mode: Mode
) -> dict[str, object]:
    """The current values of the code's free variables, checked to be data.

    Names the caller passes explicitly are skipped (they override), as are names missing from
    the module (builtins, or a NameError the server will report) and names still bound to the
    builtin of that name.
    """
    code = fn.__code__
    skip = {*explicit, template.own_name}
    values: dict[str, object] = {}
    for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=True):
        if name in skip:
            continue
        try:
            values[name] = cell.cell_contents
        except ValueError:
            raise CaptureError(
                f"free variable {name!r} of {describe_function(fn)} is referenced before assignment"
            ) from None
    module_globals = fn.__globals__
    for name in sorted(template.global_names - skip):
        if name in module_globals and module_globals[name] is not getattr(builtins, name, _MISSING):
            values[name] = module_globals[name]
    hint = f'pass a value instead with db.{mode}("...", name=value)'
    for name, value in values.items():
        try:
            check_param_name(name, template.root)
        except CaptureError as exc:
            raise CaptureError(f"free variable {name!r} cannot be shipped: {exc}") from None
        check_data(f"free variable {name!r}", name, value, hint)
    return values


def check_data(what: str, name: str, value: object, hint: str) -> None:
    """Refuse anything but data, naming the variable and where inside it the culprit sits."""
    problem = _not_data(value, name, 0, set())
    if problem is not None:
        path, desc = problem
        where = desc if path == name else f"{path} is {desc}"
        raise UnshippableValue(
            f"cannot ship {what} ({where}) to the server: only data travels "
            f"(None, bool, int, float, str, bytes, tuple, list, dict, set, pyzdb.File)"
            + (f"; {hint}" if hint else "")
        )


def _not_data(value: object, path: str, depth: int, active: set[int]) -> tuple[str, str] | None:
    """Return (path, description) of the first non-data part of `value`, or None.

    Nesting is bounded by the store's own `MAX_DEPTH`: deeper data could be neither stored nor
    returned, and this check recurses once per level.
    """
    kind = type(value)
    if kind in SCALAR_TYPES or _is_file(value):
        return None
    if kind not in _CONTAINERS:
        return path, describe_object(value)
    if depth >= MAX_DEPTH:
        return path, f"nested deeper than {MAX_DEPTH} levels"
    if id(value) in active:
        return path, "a container that contains itself"
    active.add(id(value))
    try:
        if isinstance(value, dict):
            for key, item in value.items():
                sub = f"{path}[{key!r}]"
                problem = _not_data(key, f"a key of {path}", depth + 1, active) or _not_data(
                    item, sub, depth + 1, active
                )
                if problem:
                    return problem
        elif isinstance(value, (tuple, list, set, frozenset)):
            indexed = isinstance(value, (tuple, list))
            for i, item in enumerate(value):
                if type(item) in SCALAR_TYPES:
                    continue
                sub = f"{path}[{i}]" if indexed else f"an element of {path}"
                problem = _not_data(item, sub, depth + 1, active)
                if problem:
                    return problem
        return None
    finally:
        active.discard(id(value))


def _is_file(value: object) -> bool:
    """A `File` of `FILE_MODULE`, found without importing it: if it is not loaded, no File
    exists."""
    values_module = sys.modules.get(FILE_MODULE)
    return values_module is not None and type(value) is getattr(values_module, "File", None)


def describe_object(value: object) -> str:
    """What a refusal calls `value`: a module, a function... or a value of its type."""
    if isinstance(value, ModuleType):
        return "a module"
    if isinstance(value, type):
        return "a class"
    if isinstance(value, io.IOBase):
        return "an open file"
    if isinstance(value, MethodType):
        return "a bound method"
    if inspect.isroutine(value) or isinstance(value, functools.partial):
        return "a function"
    kind = type(value)
    qualname = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else (f"{kind.__module__}.{kind.__qualname__}")
    )
    return f"a value of type {qualname}"


__all__ = ["FILE_MODULE", "check_data", "check_param_name", "describe_object", "free_values"]
