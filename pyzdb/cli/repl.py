"""`pyzdb`: an interactive prompt where each line or block runs on the database as one request.

    $ pyzdb tcp://127.0.0.1:5559          # a server (`pyzdb-server`)
    $ pyzdb --data ./pyzdb-data           # or a data directory, in this process
    $ pyzdb --data ./d <<'EOF'            # piped: no prompt, one result per line
    db['l'] = list(range(10))
    [v*v for v in db['l'] if v % 2]
    EOF
    [1, 9, 25, 49, 81]

At a terminal the same lines are typed at its `>>>` prompt. The comprehension is one round
trip, and only the result travels.

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
import code
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TextIO

from pyzdb.api.proxy import DatabaseAPI
from pyzdb.cli.evaluate import format_error, format_value, open_target, quiet_broken_pipe
from pyzdb.cli.replmeta import CONNECTION_CALLS, HELP, Completer, Timer, meta_command, render
from pyzdb.cli.replsource import (
    COMMANDS,
    assigned_names,
    best_syntax_error,
    command_of,
    describe_error,
    hint_for,
    is_complete,
)
from pyzdb.info import format_info
from pyzdb.limits import DEFAULT_URI, QUERY_FILENAME
from pyzdb.sandbox.rules import sandbox_rules
from pyzdb.version import version_line

PS1 = ">>> "
PS2 = "... "
#: readline history, kept only when a person types (stdin is a terminal).
HISTORY_FILE = "~/.pyzdb_history"
HISTORY_LENGTH = 1000


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
            complete = code.compile_command(source, QUERY_FILENAME, "single") is not None
        except (SyntaxError, ValueError, OverflowError) as error:
            block = "\n".join(self.pending[:-1])
            self.pending = []
            if block and not line[:1].isspace() and is_complete(block + "\n"):
                return self.run(block) and self.feed(line)
            self.failed = True
            self._error(describe_error(best_syntax_error(error, source), source))
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
    where.add_argument("uri", nargs="?", help=f"a pyzdb-server's URI (default {DEFAULT_URI})")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pyzdb`: 0 at the end of the input, 1 if the database cannot be opened,
    130 if Ctrl-C stopped the opening."""
    args = _parser().parse_args(argv)
    if args.rules:
        print(sandbox_rules())
        return 0
    try:
        db = open_target(args.uri, args.data, args.timeout, args.key)
    except KeyboardInterrupt:  # Ctrl-C while recovering a large directory, say
        return 130
    except Exception as error:  # a locked or unreadable directory, a malformed URI
        print(f"pyzdb: {format_error(error)}", file=sys.stderr)
        return 1
    where = os.path.abspath(args.data) if args.data is not None else db.uri
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


__all__ = ["Repl", "main", "format_history", "make_completer"]
