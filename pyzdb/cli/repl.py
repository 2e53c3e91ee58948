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
import difflib
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TextIO

from pyzdb.api.capture import ROOT, SOURCE_NAME
from pyzdb.api.proxy import DatabaseAPI
from pyzdb.cli.evaluate import format_error, format_value, open_target, quiet_broken_pipe
from pyzdb.cli.replmeta import CONNECTION_CALLS, HELP, Completer, Timer, meta_command, render
from pyzdb.errors import SecurityError
from pyzdb.info import format_info
from pyzdb.sandbox.rules import sandbox_rules
from pyzdb.version import version_line

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

    def __init__(
        self,
        db: DatabaseAPI,
        *,
        as_json: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        terminal: bool = False,
    ) -> None:
        self.db = db
        self.as_json = as_json
        #: A person at a terminal: long values are pretty-printed and cut (`.full` shows all).
        self.terminal = terminal
        #: Whether any request failed: a piped session then exits with status 1.
        self.failed = False
        #: Names the session's blocks assigned: a NameError for one of them gets the hint
        #: that names do not persist; any other is a typo.
        self.assigned: set[str] = set()
        self.timer = Timer()
        self.last_text: str | None = None
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
        if not self.pending and line.lstrip().startswith("."):  # `.timer on`: not Python
            return self.run(line)
        self.pending.append(line)
        source = "\n".join(self.pending)
        try:
            complete = code.compile_command(source, SOURCE_NAME, "single") is not None
        except (SyntaxError, ValueError, OverflowError) as error:
            block = "\n".join(self.pending[:-1])
            self.pending = []
            if block and not line[:1].isspace() and _is_complete(block + "\n"):
                return self.run(block) and self.feed(line)
            self.failed = True
            self._error(describe_error(_best_syntax_error(error, source), source))
            return True
        if not complete:
            return True
        self.pending = []
        return self.run(source)

    def run(self, source: str) -> bool:
        """Run one complete block and print its value or its error; False means `exit()`."""
        source = source.rstrip()  # the blank line that ended a block is not part of it
        if all(not line.strip() or line.lstrip().startswith("#") for line in source.split("\n")):
            return True
        command = command_of(source)
        if command in ("exit", "quit"):
            return False
        meta = meta_command(source) if command is None else None
        if meta is not None and meta[0] in ("help", "exit", "rules", "full", "timer"):
            return self._meta(*meta)
        self.timer.start()
        try:
            if meta is not None:
                value = getattr(self.db, meta[0])()
                command = meta[0]
            elif command is None:
                value = self.db.execute(source)
            else:
                value = self._command(command)
        except KeyboardInterrupt:  # a server goes on with the request: say so
            self._error("KeyboardInterrupt: stopped waiting; the request may still complete")
        except Exception as error:  # any failure is shown and the session goes on
            self.failed = True
            hint = hint_for(error, source, self.assigned)
            self._error(describe_error(error, source) + (f"\nhint: {hint}" if hint else ""))
        else:
            self.assigned |= assigned_names(source)
            self._show(value, command)
        timing = self.timer.line()
        if timing:
            print(timing, file=self.stdout, flush=True)
        return True

    def _meta(self, name: str, argument: str) -> bool:
        """A meta command (`help`, `.timer on`, ...); False means exit."""
        if name == "exit":
            return False
        if name == "help":
            text = HELP
        elif name == "rules":
            text = sandbox_rules()
        elif name == "full":
            text = self.last_text if self.last_text is not None else "(no value yet)"
        elif argument in ("on", "off"):
            self.timer.on = argument == "on"
            text = f"timer {argument}"
        else:
            self._error(".timer takes on or off")
            return True
        print(text, file=self.stdout, flush=True)
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
        elif command == "info" and not self.as_json:
            text = format_info(value)
        else:
            text = format_value(value, self.as_json)
        self.last_text = text
        if self.terminal and not self.as_json and command not in ("history", "info"):
            text = render(value, text)[0]
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
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == ROOT
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
    """`did you mean 'len'?` for a name close to a builtin of the sandbox."""
    if not name:
        return None
    from pyzdb.sandbox import BUILTINS

    close = difflib.get_close_matches(name, [*BUILTINS, ROOT], n=1)
    return f"did you mean {close[0]!r}?" if close else None


def assigned_names(source: str) -> set[str]:
    """Names a block binds at its top level (assignments, for targets, defs)."""
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
            and node.value.id == ROOT
        ):
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
def _readline_history(path: str, completer: Completer | None = None) -> Iterator[None]:
    """Load the history file and save it on the way out; nothing if readline is missing.

    With a `completer`, Tab completes (and indents an empty line); without one it indents.
    """
    try:
        import readline
    except ImportError:
        yield
        return
    libedit = "libedit" in (readline.__doc__ or "")
    if completer is not None:
        readline.set_completer(completer.complete)
        readline.set_completer_delims("")  # the completer sees the whole line before the cursor
        readline.parse_and_bind("bind ^I rl_complete" if libedit else "tab: complete")
    elif libedit:  # with no completer set, readline would complete file names
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
    where.add_argument("uri", nargs="?", help="a pyzdb-server's URI (default tcp://127.0.0.1:5559)")
    where.add_argument(
        "--data", metavar="DIR", help="embedded: open this data directory in this process instead"
    )
    parser.add_argument("--version", action="version", version=version_line("pyzdb"))
    parser.add_argument("--json", action="store_true", help="print values as JSON")
    parser.add_argument(
        "--rules",
        action="store_true",
        help="print what a query may use (the sandbox's rules) and exit",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds a request to the server may take (default 10)",
    )
    parser.add_argument(
        "--key", metavar="FILE", help="credential file from pyzdb-keys (default $PYZDB_KEY)"
    )
    return parser


def _open_database(args: argparse.Namespace) -> tuple[DatabaseAPI, str]:
    """The database and where it is, for the banner."""
    db = open_target(args.uri, args.data, args.timeout, args.key)
    return db, os.path.abspath(args.data) if args.data is not None else db.uri


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pyzdb`: 0 at the end of the input, 1 if the database cannot be opened,
    130 if Ctrl-C stopped the opening."""
    args = _parser().parse_args(argv)
    if args.rules:
        print(sandbox_rules())
        return 0
    try:
        db, where = _open_database(args)
    except KeyboardInterrupt:  # Ctrl-C while recovering a large directory, say
        return 130
    except Exception as error:  # a locked or unreadable directory, a malformed URI
        print(f"pyzdb: {format_error(error)}", file=sys.stderr)
        return 1
    interactive = sys.stdin.isatty()
    repl = Repl(db, as_json=args.json, terminal=interactive and sys.stdout.isatty())
    try:
        if interactive:
            print(
                f"pyzdb on {where}: each line or block runs there as one request; "
                "type help for help, Ctrl-D exits."
            )
            with _readline_history(os.path.expanduser(HISTORY_FILE), make_completer(db)):
                repl.loop(_read_terminal)
        else:
            repl.loop(_read_line)
    except BrokenPipeError:  # `pyzdb < script | head`: the reader left (finally closes db)
        quiet_broken_pipe()
    finally:
        if repl.locked:
            print("pyzdb: the lock was still held: its changes are rolled back", file=sys.stderr)
        db.close()
    # Like a shell script: piped input that hit an error exits 1, so `make` and CI notice.
    return 1 if repl.failed and not interactive else 0


def make_completer(db: DatabaseAPI) -> Completer:
    """Tab completion from the sandbox's own tables (builtins, methods of the data types)."""
    from pyzdb.sandbox import ALL_ATTRIBUTES, BUILTINS

    return Completer(db, list(BUILTINS), list(ALL_ATTRIBUTES), sorted(COMMANDS | CONNECTION_CALLS))


__all__ = [
    "Repl",
    "main",
    "command_of",
    "describe_error",
    "error_position",
    "format_history",
    "hint_for",
    "COMMANDS",
]
