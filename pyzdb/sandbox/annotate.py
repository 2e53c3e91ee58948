"""What leaves `pyzdb.sandbox.runner.run`: an escaped exception, rebuilt and annotated.

The query's own exceptions come out as the same built-in type with bounded, detached args (no
traceback, frame or object address travels on) and a note ``query line L, column C: <line>``;
a stop becomes the pyzdb error it carries; anything else becomes an `Error`.
"""

from __future__ import annotations

import re
from itertools import islice
from types import TracebackType
from typing import Any

from pyzdb.errors import Error, LimitExceeded
from pyzdb.limits import QUERY_FILENAME
from pyzdb.sandbox.budget import Stop
from pyzdb.sandbox.request import Request

#: Longest str/bytes argument of a query's exception kept as is on its way to the caller.
ARG_LIMIT = 2000


def translate(exc: BaseException, request: Request, source: str) -> Exception:
    """What `run` raises for an exception that left the query."""
    where = _locate(exc.__traceback__, source)
    error: Exception
    if isinstance(exc, Stop):
        error = request.error or exc.error or Error("query was stopped")
    elif isinstance(exc, MemoryError):
        error = LimitExceeded("query ran out of memory", "memory")
    elif isinstance(exc, Error):
        error = exc.with_traceback(None)
        error.__context__ = error.__cause__ = None
    elif isinstance(exc, Exception):
        error = _rebuild(exc, request)
    else:
        error = Error(f"query raised {type(exc).__name__}, which a query may not raise")
    line = column = None
    if where is not None:
        line, column, text = where
        place = f"line {line}" if column is None else f"line {line}, column {column}"
        note = f"query {place}: {text}"
        if hasattr(error, "add_note"):
            error.add_note(note)
        else:  # Python 3.10: the attribute add_note would fill
            error.__notes__ = [*getattr(error, "__notes__", ()), note]
    # ignore: the position rides on any exception class, as an attribute none of them declares
    error.pyzdb_line = line  # type: ignore[attr-defined]
    error.pyzdb_column = column  # type: ignore[attr-defined]
    return error


def _rebuild(exc: Exception, request: Request) -> Exception:
    """A fresh exception of the same built-in type, its args bounded and detached.

    Fresh, so no traceback, frame or context of the query travels on; bounded, so printing it
    later (outside any budget) is cheap and shows no object addresses.
    """
    cls = type(exc)
    args = tuple(_plain_arg(arg, request) for arg in exc.args)
    if cls.__module__ == "builtins":
        try:
            return cls(*args)
        except Exception:  # a constructor that wants other args: say it in words
            pass
    text = ", ".join(arg if type(arg) is str else repr(arg) for arg in args)
    return Error(f"{cls.__name__}: {text}")


def _plain_arg(arg: Any, request: Request) -> Any:
    cls = type(arg)
    if cls is str:  # C code formats reprs into messages ("<function ... at 0x7f...>")
        arg = _ADDRESS.sub("0x...", arg)
        return arg if len(arg) <= ARG_LIMIT else arg[:ARG_LIMIT] + "..."
    if cls is bytes:
        return arg if len(arg) <= ARG_LIMIT else arg[:ARG_LIMIT] + b"..."
    if cls in (bool, float, type(None)) or (cls is int and arg.bit_length() <= 64):
        return arg
    if not request.is_data(arg, ARG_LIMIT):
        return f"<{cls.__name__}>"
    if cls is tuple and all(_plain_arg(item, request) is item for item in arg):
        return arg
    return repr(arg)


#: A heap address as CPython prints it in a repr: never sent to a client.
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


def _locate(tb: TracebackType | None, source: str) -> tuple[int, int | None, str] | None:
    """(line, 1-based column or None, source line) of the innermost frame of query code."""
    last = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == QUERY_FILENAME:
            last = tb
        tb = tb.tb_next
    if last is None:
        return None
    line, byte_column = last.tb_lineno, None
    positions = getattr(last.tb_frame.f_code, "co_positions", None)  # Python 3.11+
    if positions is not None and last.tb_lasti >= 0:
        for start, _end, start_column, _end_column in islice(positions(), last.tb_lasti // 2, None):
            if start is not None:
                line, byte_column = start, start_column
            break
    lines = source.splitlines()
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    column = None
    if byte_column is not None:
        column = len(text.encode("utf-8")[:byte_column].decode("utf-8", "replace")) + 1
    return line, column, text.strip()[:200]


__all__ = ["ARG_LIMIT", "translate"]
