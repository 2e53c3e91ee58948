"""What the REPL reads from the text typed and from the errors it gets back.

Whether a block is complete (the plain compiler decides, as Python's own REPL does), whether it
is a call on the connection typed alone (`db.undo()`: `command_of`), the hints for the two
surprises of running on a server (`hint_for`), and where an error points in the query
(`error_position`, `describe_error`). Nothing here runs a query.
"""

from __future__ import annotations

import ast
import code
import difflib
import re

from pyzdb.cli.evaluate import format_error
from pyzdb.errors import SecurityError
from pyzdb.limits import QUERY_FILENAME, ROOT_NAME

#: Methods of the database the REPL calls itself when typed alone as `db.NAME()`: they act on
#: the connection (undo log, checkpoint, lock), so the sandbox has no business running them.
COMMANDS = frozenset(
    {"undo", "redo", "save", "checkpoint", "history", "lock", "unlock", "rollback"}
)
#: The position note the sandbox attaches (`query line 2, column 5: ...`, the column only when
#: known); read only when the error carries no `pyzdb_line` attribute.
_NOTE_POSITION = re.compile(r"query line (\d+)(?:, column (\d+))?:")


def is_complete(source: str) -> bool:
    """Whether `source` is a whole statement (no `...` line needed); False if it is invalid.

    >>> is_complete("x = 1"), is_complete("for x in db['l']:"), is_complete("1 +* 2")
    (True, False, False)
    """
    try:
        return code.compile_command(source, QUERY_FILENAME, "single") is not None
    except (SyntaxError, ValueError, OverflowError):
        return False


def best_syntax_error(error: Exception, source: str) -> Exception:
    """The same error as the exec compiler reports it: `codeop` points `1 +` at column 0."""
    try:
        compile(source + "\n", QUERY_FILENAME, "exec", dont_inherit=True)
    except SyntaxError as better:
        return better
    except (ValueError, OverflowError):
        pass
    return error


def command_of(source: str) -> str | None:
    """The REPL command `source` is, if it is exactly one: `db.undo()` -> "undo", `exit()`.

    >>> command_of("db.undo()"), command_of("exit()"), command_of("db.undo(); db.redo()")
    ('undo', 'exit', None)
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if not isinstance(call, ast.Call) or call.args or call.keywords:
        return None
    func = call.func
    if isinstance(func, ast.Name) and func.id in ("exit", "quit"):
        return func.id
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == ROOT_NAME
        and func.attr in COMMANDS
    ):
        return func.attr
    return None


def hint_for(error: Exception, source: str, assigned: set[str] | None = None) -> str | None:
    """What a REPL user most likely meant, for the two surprises of running on a server.

    `assigned`: the names earlier blocks of the session assigned, if known; a NameError for
    any other name is a typo (or a module), not a name that did not persist.
    """
    if isinstance(error, NameError):
        name = getattr(error, "name", None) or _missing_name(str(error))
        if assigned is not None and name not in assigned:
            return typo_hint(name)
        return (
            "each line or block runs alone on the database: names assigned by an earlier "
            "one are gone (keep values in db, or use them in the same block)"
        )
    command = _command_named_in(source) if isinstance(error, SecurityError) else None
    if command:
        return f"db.{command}() is a call on the connection, not query code: type it alone"
    return None


def _missing_name(message: str) -> str | None:
    match = re.search(r"name '(\w+)' is not defined", message)
    return match[1] if match else None


def typo_hint(name: str | None) -> str | None:
    """`did you mean 'len'?` for a name close to a builtin of the sandbox.

    >>> typo_hint("lenn")
    "did you mean 'len'?"
    """
    if not name:
        return None
    from pyzdb.sandbox import BUILTINS

    close = difflib.get_close_matches(name, [*BUILTINS, ROOT_NAME], n=1)
    return f"did you mean {close[0]!r}?" if close else None


def assigned_names(source: str) -> set[str]:
    """Names a block binds at its top level (assignments, for targets, defs).

    >>> sorted(assigned_names("a = 1; b, c = db['t']; db['x'] = 2"))
    ['a', 'b', 'c']
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    return {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
    } | {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def _command_named_in(source: str) -> str | None:
    """The first `db.COMMAND` anywhere in `source` (the sandbox refuses those attributes)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in COMMANDS
            and isinstance(node.value, ast.Name)
            and node.value.id == ROOT_NAME
        ):
            return node.attr
    return None


def error_position(error: BaseException) -> tuple[int, int] | None:
    """(line, column), both from 1, of where the error points in the query, if it says.

    >>> error_position(SyntaxError("invalid syntax", ("<query>", 2, 5, "x = )")))
    (2, 5)
    >>> error_position(KeyError("x")) is None
    True
    """
    line = getattr(error, "pyzdb_line", None)
    column = getattr(error, "pyzdb_column", None)
    if line is None and isinstance(error, SyntaxError):
        line, column = error.lineno, error.offset
    if line is None:
        for note in getattr(error, "__notes__", ()):
            match = _NOTE_POSITION.search(str(note))
            if match:
                line, column = int(match[1]), int(match[2] or 0)
                break
    if not isinstance(line, int):
        return None
    return line, column if isinstance(column, int) and column > 0 else 0


def describe_error(error: BaseException, source: str) -> str:
    """A short traceback-like message: the typed line, a caret under the column, the error.

    This is all the user needs: a client-side Python traceback would only show the REPL's
    own frames, never the query's.
    """
    if isinstance(error, SyntaxError):
        # str() of a SyntaxError repeats "(<query>, line 1)": the excerpt below says it.
        head = [f"{type(error).__name__}: {error.msg}"]
    else:
        head = format_error(error).split("\n")
    lines = source.split("\n")
    where = error_position(error)
    if where is None or not 1 <= where[0] <= len(lines):
        return "\n".join(head)
    number, column = where
    text = lines[number - 1]
    shown = text.lstrip()
    excerpt = [f'  File "{QUERY_FILENAME}", line {number}', "    " + shown]
    if column:
        offset = max(0, min(column - 1 - (len(text) - len(shown)), len(shown)))
        excerpt.append("    " + " " * offset + "^")
    # The excerpt shows what the position note says, so the note goes.
    head = [line for line in head if not _NOTE_POSITION.match(line)]
    return "\n".join(excerpt + head)


__all__ = [
    "COMMANDS",
    "is_complete",
    "best_syntax_error",
    "command_of",
    "hint_for",
    "typo_hint",
    "assigned_names",
    "error_position",
    "describe_error",
]
