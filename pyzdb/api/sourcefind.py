"""Where the source of code typed rather than saved can still be found, for lambda capture.

pyzdb ships a lambda's *source*, and `linecache` has it for files, IPython and Jupyter cells,
Python 3.13's REPL, and `exec`'d code whose caller registered a linecache entry. Two common
places keep no linecache entry, yet Python still holds the text:

- the plain `python3` prompt (file `<stdin>`): readline's history holds the lines typed, the
  statement being run being the last ones;
- `python -c CODE` (file `<string>`): `sys.orig_argv` holds CODE.

`typed_sources` yields candidate texts; the caller keeps the first one in which the code's
own lambda is found (compiled and compared with the code object), so a wrong candidate -- an
older history line, an `exec` that is not the `-c` text -- is never used.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

#: History lines tried, newest first, for one statement typed at the prompt.
MAX_HISTORY_LINES = 50


def typed_sources(filename: str) -> Iterator[str]:
    """Candidate source texts for code compiled from `filename` that linecache does not hold."""
    if filename == "<string>":
        command = _dash_c_command()
        if command is not None:
            yield command
    elif filename == "<stdin>":
        yield from _history_suffixes()


def _dash_c_command() -> str | None:
    argv: list[str] = getattr(sys, "orig_argv", None) or []
    for index, argument in enumerate(argv[1:], 1):
        if argument == "-c" and index + 1 < len(argv):
            return argv[index + 1]
        if argument.startswith("-c") and len(argument) > 2:  # python -c'code'
            return argument[2:]
        if not argument.startswith("-"):
            return None  # a script or module name: options after it are its own
    return None


def _history_suffixes() -> Iterator[str]:
    """The last 1, 2, ... lines of readline's history, each as one text."""
    readline = sys.modules.get("readline")
    if readline is None:
        return
    try:
        length = readline.get_current_history_length()
        lines: list[str] = []
        for index in range(length, max(0, length - MAX_HISTORY_LINES), -1):
            item = readline.get_history_item(index)
            if item is None:
                break
            lines.insert(0, item)
            yield "\n".join(lines) + "\n"
    except (AttributeError, ValueError):
        return


__all__ = ["typed_sources", "MAX_HISTORY_LINES"]
