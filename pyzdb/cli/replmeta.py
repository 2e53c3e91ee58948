"""What makes the `pyzdb` REPL feel like Python's: meta commands, display, completion, timing.

Why a module of its own: `repl.py` decides what is a statement and ships it; everything here
is about the person at the keyboard -- `help`, `exit`, `info` and `.timer` typed as in Python's
REPL or sqlite3's shell, long values pretty-printed and cut to a screenful (`.full` shows the
rest), Tab completing `db[...]` keys, builtins and methods -- and none of it runs on the
database except the key lookups that completion asks for.
"""

from __future__ import annotations

import ast
import keyword
import pprint
import re
import shutil
import time
from typing import Any

from pyzdb.limits import ROOT_NAME

HELP = """\
Each line or block you type runs on the database as one request; the value of the last
expression is printed. The root is `db`: db['users'][0], [u for u in db['users'] if ...].
Names do not persist between requests: keep values in db, or use them in the same block.

Calls on the connection, typed alone:
  db.undo()  db.redo()  db.history()  db.checkpoint() (db.save())  db.info()  db.ping()
  db.lock()  db.unlock()  db.rollback()  db.keys()  db.values()  db.items()
Meta commands:
  help, .help        this text                 info, .info     the server's state
  .rules             what a query may use      .timer on|off   time each request
  .full              the last value in full    exit, quit, Ctrl-D   leave
Tab completes db[...] keys, builtins and methods; at the start of a line it indents."""

#: `db.NAME()` typed alone that the REPL answers with a call on the connection (besides
#: `repl.COMMANDS`): reads whose results a query cannot return as they are (dict views).
CONNECTION_CALLS = frozenset({"info", "ping", "keys", "values", "items"})
#: Bare words and dot-commands, mapped to the meta command they are.
_WORDS = {
    "help": "help",
    ".help": "help",
    "help()": "help",
    "exit": "exit",
    "quit": "exit",
    ".exit": "exit",
    ".quit": "exit",
    "info": "info",
    ".info": "info",
    ".rules": "rules",
    ".full": "full",
    ".timer": "timer",
    ".ping": "ping",
}
#: Shown on a terminal: values longer than this many lines are cut, with a note.
MAX_LINES = 40
#: Values whose repr is longer than this are cut before pretty-printing (pprint is slow).
PRETTY_CHARS = 200_000


def meta_command(source: str) -> tuple[str, str] | None:
    """(command, argument) when `source` is a meta command or connection call, else None.

    >>> meta_command(".timer on"), meta_command("db.info()"), meta_command("db['x']")
    (('timer', 'on'), ('info', ''), None)
    """
    text = source.strip()
    word, _, argument = text.partition(" ")
    if word in _WORDS and (word.startswith(".") or not argument):
        return _WORDS[word], argument.strip()
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if not isinstance(call, ast.Call):
        return None
    func = call.func
    if isinstance(func, ast.Name) and func.id == "help":  # help(len) too: the REPL's help
        return "help", ""
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == ROOT_NAME
        and func.attr in CONNECTION_CALLS
        and not call.args
        and not call.keywords
    ):
        return func.attr, ""
    return None


def size_text(size: int) -> str:
    """A byte count as people read it.

    >>> size_text(512), size_text(3 * 2**20)
    ('512 bytes', '3.0 MB')
    """
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def render(value: Any, text: str, width: int | None = None) -> tuple[str, bool]:
    """A value for a terminal: (text, whether it was cut). Short values print as `repr`;
    longer ones pretty-printed to the terminal's width and cut to `MAX_LINES` lines."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    if len(text) <= width:
        return text, False
    whole = len(text) <= PRETTY_CHARS
    if whole:
        try:
            pretty = pprint.pformat(value, width=width, sort_dicts=False, compact=True)
        except Exception:  # a value pprint cannot handle: its repr, wrapped
            pretty = text
    else:
        pretty = text[: (MAX_LINES + 1) * width]
    lines: list[str] = []
    for line in pretty.split("\n"):
        while len(line) > width and len(lines) <= MAX_LINES:  # a long str: wrap it
            lines.append(line[:width])
            line = line[width:]
        lines.append(line)
        if len(lines) > MAX_LINES:
            break
    if whole and len(lines) <= MAX_LINES:
        return "\n".join(lines), False
    note = (
        f"... cut to {MAX_LINES} lines: the value is {size_text(len(text))} as text; "
        ".full prints all of it"
    )
    return "\n".join(lines[:MAX_LINES] + [note]), True


class Timer:
    """`.timer on`: a `Run Time: 0.012 s` line after each request, as sqlite3 prints."""

    def __init__(self) -> None:
        self.on = False
        self._started = 0.0

    def start(self) -> None:
        self._started = time.perf_counter()

    def line(self) -> str | None:
        if not self.on:
            return None
        return f"Run Time: {time.perf_counter() - self._started:.3f} s"


_KEY_PATH = re.compile("(" + ROOT_NAME + r"(?:\[[^\[\]]*\])*)\[(['\"]?)([^'\"\[\]]*)$")
_DOTTED = re.compile(r"([\w\]\)'\"]+)\.(\w*)$")
_WORD = re.compile(r"[A-Za-z_]\w*$")


class Completer:
    """readline completion over the whole line: `db[` keys (asked of the database, cached a
    few seconds), methods after a dot, builtins and keywords for a word; Tab on an empty or
    indented line inserts four spaces, as Python's REPL does."""

    def __init__(
        self,
        db: Any,
        builtin_names: list[str],
        method_names: list[str],
        connection_names: list[str],
    ) -> None:
        self.db = db
        self.words = sorted({*builtin_names, *keyword.kwlist, ROOT_NAME})
        self.methods = sorted(set(method_names))
        self.connection = sorted(set(connection_names))
        self._keys: dict[str, tuple[float, list[Any]]] = {}
        self._matches: list[str] = []

    def complete(self, line: str, state: int) -> str | None:
        """readline's callback with no delimiters: `line` is the text before the cursor."""
        if state == 0:
            self._matches = self.matches(line)
        return self._matches[state] if state < len(self._matches) else None

    def matches(self, line: str) -> list[str]:
        if not line.strip():
            return [line + "    "]
        match = _KEY_PATH.search(line)
        if match:
            head = line[: match.start(2)]
            quote, typed = match[2], match[3]
            found = []
            for key in self.keys(match[1]):
                if isinstance(key, str) and key.startswith(typed):
                    mark = quote or "'"
                    found.append(f"{head}{mark}{key}{mark}]")
                elif not quote and not isinstance(key, str) and repr(key).startswith(typed):
                    found.append(f"{head}{key!r}]")
            return found
        match = _DOTTED.search(line)
        if match:
            head = line[: match.start(2)]
            names = self.connection if match[1] == ROOT_NAME else self.methods
            suffix = "()" if match[1] == ROOT_NAME else "("
            return [head + name + suffix for name in names if name.startswith(match[2])]
        match = _WORD.search(line)
        if match:
            head = line[: match.start()]
            return [head + word for word in self.words if word.startswith(match[0])]
        return []

    def keys(self, path: str) -> list[Any]:
        """The keys of the dict at `path` (source text typed by the user), cached 5 s."""
        cached = self._keys.get(path)
        now = time.monotonic()
        if cached and now - cached[0] < 5.0:
            return cached[1]
        try:
            keys = self.db.query(f"list({path})[:1000] if isinstance({path}, dict) else []")
        except Exception:  # completion must never raise into readline
            keys = []
        self._keys[path] = (now, keys)
        return keys


__all__ = [
    "HELP",
    "CONNECTION_CALLS",
    "meta_command",
    "render",
    "Timer",
    "Completer",
    "size_text",
    "MAX_LINES",
]
