"""The CPython reference the tests compare pyzdb with: a plain `exec`, and type-aware equality
(pyzdb promises type-for-type round trips, so `==` is too weak).

Types must match exactly (bool is not int, tuple is not list), dict keys are compared in order
and by type, and floats by `repr` (so -0.0 differs from 0.0 and nan equals nan).
"""

from __future__ import annotations

import ast
from typing import Any


def difference(a: Any, b: Any, path: str = "value") -> str | None:
    """None when `a` and `b` are equal in value and type, recursively; else where they differ.

    Types must match exactly (bool is not int, tuple is not list), dict keys are compared in
    order and by type, and floats by `repr` (so -0.0 differs from 0.0 and nan equals nan).
    """
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} {a!r} != {type(b).__name__} {b!r}"
    if isinstance(a, float):
        return None if repr(a) == repr(b) else f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict):
        keys_a, keys_b = list(a), list(b)
        if len(keys_a) != len(keys_b):
            return f"{path}: keys {keys_a!r} != {keys_b!r}"
        for index, (key_a, key_b) in enumerate(zip(keys_a, keys_b, strict=True)):
            found = difference(key_a, key_b, f"{path}.keys()[{index}]")
            if found:
                return found
        for key in keys_a:
            found = difference(a[key], b[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}: {a!r} != {b!r}"
        for index, (item_a, item_b) in enumerate(zip(a, b, strict=True)):
            found = difference(item_a, item_b, f"{path}[{index}]")
            if found:
                return found
        return None
    if isinstance(a, (set, frozenset)):
        return None if sorted(map(repr, a)) == sorted(map(repr, b)) else f"{path}: {a!r} != {b!r}"
    return None if a == b else f"{path}: {a!r} != {b!r}"


def same(a: Any, b: Any) -> bool:
    return difference(a, b) is None


def assert_same(got: Any, expected: Any, what: str) -> None:
    found = difference(got, expected, what)
    assert found is None, f"pyzdb differs from the CPython model: {found}"


RESULT_NAME = "pyzdb_last_expression_value"


def cpython_exec(source: str, names: dict[str, Any]) -> Any:
    """Run `source` with plain `exec`; the value of its final expression statement, else None.

    The final statement, when it is an expression, is rewritten into an assignment to a name
    no block uses, which is how `db.execute` reports "the value of the last expression".
    """
    module = ast.parse(source)
    if module.body and isinstance(module.body[-1], ast.Expr):
        last = module.body[-1]
        module.body[-1] = ast.copy_location(
            ast.Assign(targets=[ast.Name(RESULT_NAME, ast.Store())], value=last.value), last
        )
        ast.fix_missing_locations(module)
    exec(compile(module, "<cpython>", "exec"), names)  # the CPython reference run
    return names.get(RESULT_NAME)
