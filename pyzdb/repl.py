"""`pyzdb`: an interactive prompt where each line or block runs on the database as one request.

    $ pyzdb tcp://127.0.0.1:5559          # a server (`pyzdb-server`)
    $ pyzdb --data ./pyzdb-data           # or a data directory, in this process
    >>> db['l'] = list(range(10))
    >>> [v*v for v in db['l'] if v % 2]   # one round trip: only the result travels
    [1, 9, 25, 49, 81]
    >>> db.undo()
    True

Theory of operation
-------------------
The seed's REPL evaluated each line on the client against a lazy proxy, so a comprehension
fetched the whole list and filtered it here, one request per `[...]`. This one never evaluates
anything locally: it only decides, with the plain compiler (`code.compile_command`, as Python's
own REPL does), whether the input so far is a complete statement or needs a `...` line, then
ships the whole text with `db.execute(source)` and prints the value of its last expression
statement. RestrictedPython stays on the server, where it belongs.

Undo, redo, checkpoints, history and the lock are not data operations the sandbox could run:
they are calls on the connection. Typed alone in their exact call form (`db.undo()`, ...) they
are recognised here and made as calls; everything else goes to the database.

With a terminal the REPL prompts, keeps readline history in `~/.pyzdb_history`, and Ctrl-C
drops the current input. Driven over a pipe it prints no prompt and no banner: stdout carries
only values, one per line, flushed as they come, and errors go to stderr.
"""

from __future__ import annotations

import argparse
import ast
import code
import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TextIO

from .capture import ROOT, SOURCE_NAME
from .cli import format_error, format_value, open_target
from .errors import SecurityError
from .proxy import DatabaseAPI
from .version import version_line

PS1 = ">>> "
PS2 = "... "
#: readline history, kept only when a person types (stdin is a terminal).
HISTORY_FILE = "~/.pyzdb_history"
HISTORY_LENGTH = 1000
#: Methods of the database the REPL calls itself when typed alone as `db.NAME()`: they act on
#: the connection (undo log, checkpoint, lock), so the sandbox has no business running them.
COMMANDS = frozenset(
    {"undo", "redo", "save", "checkpoint", "history", "lock", "unlock", "rollback"}
)
#: The position note the sandbox attaches (`query line 2, column 5: ...`, the column only when
#: known); read only when the error carries no `pyzdb_line` attribute.
_NOTE_POSITION = re.compile(r"query line (\d+)(?:, column (\d+))?:")


class Repl:
    """One session on an open database: read blocks, ship each whole, print what comes back."""

    def __init__(self, db: DatabaseAPI, *, as_json: bool = False, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> None:
        self.db = db
        self.as_json = as_json
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        #: Whether `db.lock()` was typed and not yet released: closing then rolls it back.
        self.locked = False
        #: Lines of the statement being typed, waiting for its end.
        self.pending: list[str] = []

    def loop(self, read: Callable[[str], str]) -> None:
        """Read with `read(prompt)` until it raises EOFError (Ctrl-D, end of the pipe) or
        `exit()` is typed. Ctrl-C drops the pending lines."""
        while True:
            try:
                if not self.feed(read(PS2 if self.pending else PS1)):
                    return
            except EOFError:
                if self.pending:  # the input ended inside a block: run what there is
                    self.run("\n".join(self.pending))
                return
            except KeyboardInterrupt:
                self._error("\nKeyboardInterrupt")
                self.pending = []

    def feed(self, line: str) -> bool:
        """Add one line; run the block once it is a complete statement. False means `exit()`.

        As in Python, a compound statement ends with a blank line; a line back at the margin
        ends it too, since code pasted or piped from a file need not have one.
        """
        self.pending.append(line)
        source = "\n".join(self.pending)
        try:
            complete = code.compile_command(source, SOURCE_NAME, "single") is not None
        except (SyntaxError, ValueError, OverflowError) as error:
            block = "\n".join(self.pending[:-1])
            self.pending = []
            if block and not line[:1].isspace() and _is_complete(block + "\n"):
                return self.run(block) and self.feed(line)
            self._error(describe_error(_best_syntax_error(error, source), source))
            return True
        if not complete:
            return True
        self.pending = []
        return self.run(source)

    def run(self, source: str) -> bool:
        """Run one complete block and print its value or its error; False means `exit()`."""
        source = source.rstrip()  # the blank line that ended a block is not part of it
        if all(not line.strip() or line.lstrip().startswith("#")
               for line in source.split("\n")):
            return True
        command = command_of(source)
        if command in ("exit", "quit"):
            return False
        try:
            if command is None:
                value = self.db.execute(source)
            else:
                value = self._command(command)
        except KeyboardInterrupt:  # a server goes on with the request: say so
            self._error("KeyboardInterrupt: stopped waiting; the request may still complete")
        except Exception as error:  # any failure is shown and the session goes on
            hint = hint_for(error, source)
            self._error(describe_error(error, source) + (f"\nhint: {hint}" if hint else ""))
        else:
            self._show(value, command)
        return True

    def _command(self, name: str) -> Any:
        if name in ("unlock", "rollback"):  # released even when it fails (a lost lease)
            self.locked = False
        value = getattr(self.db, name)()
        if name == "lock":
            self.locked = True
        return value

    def _show(self, value: Any, command: str | None) -> None:
        if value is None:
            return
        if command == "history" and not self.as_json:
            text = format_history(value)
        else:
            text = format_value(value, self.as_json)
        print(text, file=self.stdout, flush=True)

    def _error(self, text: str) -> None:
        self.stdout.flush()  # keep the order of values and errors on a terminal
        print(text, file=self.stderr, flush=True)


def _is_complete(source: str) -> bool:
    """Whether `source` is a whole statement (no `...` line needed); False if it is invalid."""
    try:
        return code.compile_command(source, SOURCE_NAME, "single") is not None
    except (SyntaxError, ValueError, OverflowError):
        return False


def _best_syntax_error(error: Exception, source: str) -> Exception:
    """The same error as the exec compiler reports it: `codeop` points `1 +` at column 0."""
    try:
        compile(source + "\n", SOURCE_NAME, "exec", dont_inherit=True)
    except SyntaxError as better:
        return better
    except (ValueError, OverflowError):
        pass
    return error


def command_of(source: str) -> str | None:
    """The REPL command `source` is, if it is exactly one: `db.undo()` -> "undo", `exit()`."""
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
    if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            and func.value.id == ROOT and func.attr in COMMANDS):
        return func.attr
    return None


def hint_for(error: Exception, source: str) -> str | None:
    """What a REPL user most likely meant, for the two surprises of running on a server."""
    if isinstance(error, NameError):
        return ("each line or block runs alone on the database: names assigned by an earlier "
                "one are gone (keep values in db, or use them in the same block)")
    command = _command_named_in(source) if isinstance(error, SecurityError) else None
    if command:
        return f"db.{command}() is a call on the connection, not query code: type it alone"
    return None


def _command_named_in(source: str) -> str | None:
    """The first `db.COMMAND` anywhere in `source` (the sandbox refuses those attributes)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in COMMANDS
                and isinstance(node.value, ast.Name) and node.value.id == ROOT):
            return node.attr
    return None


def error_position(error: BaseException) -> tuple[int, int] | None:
    """(line, column), both from 1, of where the error points in the query, if it says."""
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
    excerpt = [f'  File "{SOURCE_NAME}", line {number}', "    " + shown]
    if column:
        offset = max(0, min(column - 1 - (len(text) - len(shown)), len(shown)))
        excerpt.append("    " + " " * offset + "^")
    # The excerpt shows what the position note says, so the note goes.
    head = [line for line in head if not _NOTE_POSITION.match(line)]
    return "\n".join(excerpt + head)


def format_history(units: list[dict[str, Any]]) -> str:
    """One row per undo unit, oldest first: number, local time, source (and if undone).

    A block's later lines go under its first, so the source reads as it was typed.
    """
    rows = []
    for number, unit in enumerate(units, 1):
        when = datetime.fromtimestamp(unit["time"]).strftime("%Y-%m-%d %H:%M:%S")
        head = f"{number:4}  {when}  "
        first, *rest = str(unit["label"]).rstrip().split("\n")
        mark = "  (undone)" if unit.get("undone") else ""
        rows.append(head + first + mark)
        rows.extend(" " * len(head) + line for line in rest)
    return "\n".join(rows) or "(no units: nothing to undo or redo)"


def _read_terminal(prompt: str) -> str:
    """`input` with the prompt; Ctrl-D leaves the cursor on a fresh line, as Python does."""
    try:
        return input(prompt)
    except EOFError:
        print()
        raise


def _read_line(prompt: str) -> str:
    """Read from a pipe: no prompt (stdout carries only values), EOFError at the end."""
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


@contextlib.contextmanager
def _readline_history(path: str) -> Iterator[None]:
    """Load the history file and save it on the way out; nothing if readline is missing."""
    try:
        import readline
    except ImportError:
        yield
        return
    # Tab indents a block: with no completer set, readline would complete file names.
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I ed-insert")
    else:
        readline.parse_and_bind("tab: tab-insert")
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(HISTORY_LENGTH)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            readline.write_history_file(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyzdb",
        description="An interactive prompt on a pyzdb database: each line or block runs on "
        "the database as one request, and its value is printed. db.undo(), db.redo(), "
        "db.save(), db.checkpoint(), db.history(), db.lock(), db.unlock() and db.rollback() "
        "typed alone are calls on the connection.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("uri", nargs="?",
                       help="a pyzdb-server's URI (default tcp://127.0.0.1:5559)")
    where.add_argument("--data", metavar="DIR",
                       help="embedded: open this data directory in this process instead")
    parser.add_argument("--version", action="version", version=version_line("pyzdb"))
    parser.add_argument("--json", action="store_true", help="print values as JSON")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="seconds a request to the server may take (default 10)")
    return parser


def _open_database(args: argparse.Namespace) -> tuple[DatabaseAPI, str]:
    """The database and where it is, for the banner."""
    db = open_target(args.uri, args.data, args.timeout)
    return db, os.path.abspath(args.data) if args.data is not None else db.uri


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pyzdb`: 0 at the end of the input, 1 if the database cannot be opened,
    130 if Ctrl-C stopped the opening."""
    args = _parser().parse_args(argv)
    try:
        db, where = _open_database(args)
    except KeyboardInterrupt:  # Ctrl-C while recovering a large directory, say
        return 130
    except Exception as error:  # a locked or unreadable directory, a malformed URI
        print(f"pyzdb: {format_error(error)}", file=sys.stderr)
        return 1
    repl = Repl(db, as_json=args.json)
    interactive = sys.stdin.isatty()
    try:
        if interactive:
            print(f"pyzdb on {where}: each line or block runs there as one request; "
                  "Ctrl-D exits.")
            with _readline_history(os.path.expanduser(HISTORY_FILE)):
                repl.loop(_read_terminal)
        else:
            repl.loop(_read_line)
    finally:
        if repl.locked:
            print("pyzdb: the lock was still held: its changes are rolled back",
                  file=sys.stderr)
        db.close()
    return 0


__all__ = ["Repl", "main", "command_of", "describe_error", "error_position", "format_history",
           "hint_for", "COMMANDS"]
