"""Exceptions across the wire: `ErrorInfo`, what a failed reply carries, and both conversions.

The server describes any exception by its type's *name* (`error_to_info`); the client raises
the closest class the tables of `pyzdb.errors` name (`info_to_exception`). No class named by
the wire is ever looked up anywhere else, let alone instantiated.

    >>> info_to_exception(error_to_info(KeyError("k")))
    KeyError('k')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyzdb.codec import encode_value, refusal, type_name
from pyzdb.errors import PYZDB_EXCEPTIONS, QUERY_EXCEPTIONS, Error, LimitExceeded


def _require(ok: bool, rule: str, value: object) -> None:
    if not ok:
        raise refusal(rule, value)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception as it crosses the wire: the type's name and never the type itself (see
    `error_to_info` and `info_to_exception`)."""

    type: str
    args: tuple[Any, ...]
    message: str
    note: str = ""
    line: int | None = None
    column: int | None = None
    budget: str = ""

    def __post_init__(self) -> None:
        _require(
            type(self.type) is str and self.type != "", "error type is a non-empty str", self.type
        )
        _require(type(self.args) is tuple, "error args is a tuple", self.args)
        _require(type(self.message) is str, "error message is a str", self.message)
        _require(type(self.note) is str, "error note is a str", self.note)
        _require(
            self.line is None or type(self.line) is int, "error line is an int or None", self.line
        )
        _require(
            self.column is None or type(self.column) is int,
            "error column is an int or None",
            self.column,
        )
        _require(type(self.budget) is str, "error budget is a str", self.budget)

    def to_wire(self) -> list[Any]:
        return [self.type, self.args, self.message, self.note, self.line, self.column, self.budget]

    @classmethod
    def from_wire(cls, wire: Any) -> ErrorInfo:
        _require(type(wire) is list and len(wire) == 7, "an error is an array of 7 items", wire)
        return cls(*wire)


def _table_class(cls: type) -> type | None:
    """`cls` itself if the tables of pyzdb.errors name it, else its nearest ancestor they name.

    The search stops at `Exception`: an unknown server-side failure should reach the client as
    a pyzdb `Error` that names it, not as a bare Exception.
    """
    for candidate in cls.__mro__:
        name = candidate.__name__
        if QUERY_EXCEPTIONS.get(name) is candidate or PYZDB_EXCEPTIONS.get(name) is candidate:
            return candidate if candidate is not Exception or cls is Exception else None
    return None


def _is_data(value: object) -> bool:
    try:
        encode_value(value)
    except Exception:  # not data, too deep, or an object whose methods raise: all the same here
        return False
    return True


def _text(value: object, show: Any) -> str:
    """`show(value)` (str or repr), or a placeholder when it raises: an error report must not
    fail because of the object it reports on."""
    try:
        return show(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def error_to_info(exc: BaseException) -> ErrorInfo:
    """The server side: describe any exception so the client can raise its closest equivalent.

    A class that the tables of pyzdb.errors name travels with its args (each arg that is not
    data travels as its repr). A subclass of one travels as that class, with its own name at the
    head of the message: UnicodeDecodeError arrives as UnicodeError("UnicodeDecodeError: ...").
    Any other class travels by name only. The note, the line and column the sandbox attached,
    and a LimitExceeded's budget travel too.

    >>> error_to_info(UnicodeDecodeError("utf-8", b"\\xff", 0, 1, "bad")).type
    'UnicodeError'
    """
    cls = type(exc)
    message = _text(exc, str)
    known = _table_class(cls)
    if known is cls:
        name = cls.__name__
        args = tuple(arg if _is_data(arg) else _text(arg, repr) for arg in exc.args)
    else:
        own = type_name(cls)
        if known is not None:
            name, message = known.__name__, f"{own}: {message}"
        else:
            name = own
        args = (message,)
    notes = getattr(exc, "__notes__", None)
    note = "\n".join(_text(item, str) for item in notes) if isinstance(notes, list) else ""
    line = getattr(exc, "pyzdb_line", None)
    column = getattr(exc, "pyzdb_column", None)
    if line is None and isinstance(exc, SyntaxError):
        line, column = exc.lineno, exc.offset
    budget = exc.budget if isinstance(exc, LimitExceeded) else ""
    return ErrorInfo(
        name,
        args,
        message,
        note,
        line if type(line) is int else None,
        column if type(column) is int else None,
        budget if type(budget) is str else _text(budget, str),
    )


def info_to_exception(info: ErrorInfo) -> BaseException:
    """The client side: the exception to raise for a failed reply.

    A name in QUERY_EXCEPTIONS becomes that built-in type with the same args, and a name in
    PYZDB_EXCEPTIONS becomes that pyzdb class (a LimitExceeded keeps its budget). Any other name
    becomes `Error("<name>: <message>")`: no class named by the wire is ever looked up anywhere
    else, let alone instantiated. The note is added with `add_note` (Python 3.11+), and the
    line and column become the attributes `pyzdb_line` and `pyzdb_column`.

    >>> info_to_exception(ErrorInfo("os.system", ("rm",), "bye"))
    Error('os.system: bye')
    """
    cls = QUERY_EXCEPTIONS.get(info.type) or PYZDB_EXCEPTIONS.get(info.type)
    if cls is None:
        exc: BaseException = Error(f"{info.type}: {info.message}")
    else:
        try:
            exc = cls(*info.args)
        except Exception:  # args that do not fit the constructor: the message still does
            exc = cls(info.message)
        if isinstance(exc, LimitExceeded):
            exc.budget = info.budget
    if info.note and hasattr(exc, "add_note"):
        exc.add_note(info.note)
    # ignore: the position rides on any exception class, as an attribute none of them declares
    exc.pyzdb_line = info.line  # type: ignore[attr-defined]
    exc.pyzdb_column = info.column  # type: ignore[attr-defined]
    return exc


__all__ = ["ErrorInfo", "error_to_info", "info_to_exception"]
