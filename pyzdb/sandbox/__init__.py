"""The sandbox: RestrictedPython policy and compile, running a request, budgets and guards.

Imports only `errors`, `limits` and `values` from pyzdb: it knows no store, no engine, no
socket. The map of its modules and their contracts is in this folder's README.md.

Kept light on purpose: the names below are imported on first use, so reading the rules
(`pyzdb.sandbox_rules()` reads `attributes` and `builtins`, plain tables) never loads
RestrictedPython, which only `compile_request` needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyzdb.sandbox.attributes import ALL_ATTRIBUTES, ATTRIBUTES, FILE_ATTRIBUTES
    from pyzdb.sandbox.budget import Budget
    from pyzdb.sandbox.builtins import BUILTINS, GUARDED_BUILTINS
    from pyzdb.sandbox.compile import Compiled, compile_request
    from pyzdb.sandbox.rules import sandbox_rules
    from pyzdb.sandbox.runner import release_leftovers, run

#: Public name -> the module that defines it.
_HOMES = {
    "Budget": "budget",
    "Compiled": "compile",
    "compile_request": "compile",
    "run": "runner",
    "release_leftovers": "runner",
    "ATTRIBUTES": "attributes",
    "FILE_ATTRIBUTES": "attributes",
    "ALL_ATTRIBUTES": "attributes",
    "BUILTINS": "builtins",
    "GUARDED_BUILTINS": "builtins",
    "sandbox_rules": "rules",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # found directly from now on: the engine reads these per request
    return value


__all__ = [
    "Budget",
    "Compiled",
    "compile_request",
    "run",
    "release_leftovers",
    "ATTRIBUTES",
    "FILE_ATTRIBUTES",
    "ALL_ATTRIBUTES",
    "BUILTINS",
    "GUARDED_BUILTINS",
    "sandbox_rules",
]
