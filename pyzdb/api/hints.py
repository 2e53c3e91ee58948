"""Hints for the mistakes a Python user makes first, added to an error as a `hint: ...` note.

Why on the client: the client has what the hint needs -- the source as typed, whether it was
a query or an execute, the values it tried to ship -- and every way in (the embedded and the
remote database, `pyzdb-eval`, the REPL) goes through `DatabaseAPI.query`/`execute`. The
error itself is unchanged (same type, same message, same position): a hint is an extra note
that tracebacks, `pyzdb-eval` and the REPL print after it.
"""

from __future__ import annotations

import ast
import re

from pyzdb.limits import QUERY_FILENAME

#: Modules people reach for in a query; none exists there.
MODULES = frozenset(
    "math cmath os sys re json datetime time random collections itertools functools "
    "statistics string decimal fractions operator copy pprint subprocess pathlib shutil socket "
    "pickle numpy np pandas pd uuid hashlib base64 io typing builtins importlib".split()
)
_MODULES_HINT = (
    "modules are not available in a query (no import): use the builtins and operators -- "
    "x ** 0.5 for a square root, round(), abs(), divmod(), min(), max(), sum(), int() -- or "
    "compute on the client; the full table: pyzdb.sandbox_rules() or `pyzdb --rules`"
)
_NOT_DATA_TYPES = re.compile(r"\b(datetime|date|time|timedelta|Decimal|UUID)\b")
_NAME_ERROR = re.compile(r"name '(\w+)' is not defined")
_MISSING_ATTRIBUTE = re.compile(r"attribute '(\w+)' is not available on any data type")


def hints_for(error: BaseException, source: str | None, mode: str) -> list[str]:
    """What to do about `error`, raised by `db.<mode>(source)`; empty when nothing is known."""
    hints: list[str] = []
    message = str(error)
    tree = _parse(source)
    if isinstance(error, SyntaxError) and mode == "query" and source is not None:
        if _compiles(source, "exec"):
            hints.append(
                "statements (assignments, for, if, del...) go to db.execute(); "
                "db.query() takes one expression"
            )
    elif isinstance(error, NameError):
        match = _NAME_ERROR.search(message)
        if match and match[1] in MODULES:
            hints.append(_MODULES_HINT)
    elif type(error).__name__ == "SecurityError":
        if "import is not allowed" in message or any(
            name in MODULES for name in _attribute_bases(tree, _MISSING_ATTRIBUTE, message)
        ):
            hints.append(_MODULES_HINT)
    if isinstance(error, (TypeError, ValueError)) and _NOT_DATA_TYPES.search(message):
        hints.append(
            "dates and times are not data in pyzdb: store d.isoformat() (text that "
            "sorts in time order) or d.timestamp() (a float), and convert back with "
            "datetime.fromisoformat() / datetime.fromtimestamp() on the client"
        )
    return hints


def _parse(source: str | None) -> ast.AST | None:
    if source is None:
        return None
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _compiles(source: str, syntax: str) -> bool:
    try:
        compile(source, QUERY_FILENAME, syntax, dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return True


def _attribute_bases(tree: ast.AST | None, pattern: re.Pattern[str], message: str) -> set[str]:
    """Names `M` of `M.attr` in the source, for each attribute the message refuses."""
    refused = set(pattern.findall(message))
    if tree is None or not refused:
        return set()
    return {
        node.value.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in refused
        and isinstance(node.value, ast.Name)
    }


def add_hints(error: BaseException, source: str | None, mode: str) -> None:
    """Attach the hints for `error` as `hint: ...` notes (once)."""
    notes = getattr(error, "__notes__", None) or []
    for hint in hints_for(error, source, mode):
        note = f"hint: {hint}"
        if note not in notes:
            if hasattr(error, "add_note"):
                error.add_note(note)
            else:  # Python 3.10: the attribute add_note sets
                error.__notes__ = [*notes, note]
            notes = error.__notes__


__all__ = ["hints_for", "add_hints", "MODULES"]
