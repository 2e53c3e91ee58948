"""Console scripts: `pyzdb-eval` (one-shot, scriptable).

`pyzdb-eval` runs one expression or statement block and prints its value: `repr` by default
(what you would see in Python), or JSON with `--json` for pipes. Errors go to stderr in one
line plus the query position, and the exit status is 1, so shell scripts can test it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from pyzdb.info import format_info
from pyzdb.limits import DEFAULT_URI
from pyzdb.values import File
from pyzdb.version import version_line


def to_json(value: Any) -> Any:
    """JSON has no tuples, bytes, sets or non-string keys: map them to the nearest JSON.

    >>> to_json({1: (b"a", {3, 2}, 2**60)})
    {'1': [{'$bytes': 'YQ=='}, [2, 3], '1152921504606846976']}
    """
    if isinstance(value, dict):
        return {_json_key(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_json(item) for item in value), key=repr)
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, File):
        return {"$file": {"digest": value.digest, "name": value.name, "size": value.size}}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return str(value)
    return value


def _json_key(key: Any) -> str:
    return key if isinstance(key, str) else repr(key)


def format_value(value: Any, as_json: bool) -> str:
    if as_json:
        return json.dumps(to_json(value), ensure_ascii=False)
    return repr(value)


def format_error(error: BaseException) -> str:
    """`KeyError: 'x'` plus the notes that point into the query.

    >>> format_error(KeyError("x"))
    "KeyError: 'x'"
    """
    lines = [f"{type(error).__name__}: {error}"]
    lines.extend(getattr(error, "__notes__", ()))
    return "\n".join(lines)


def _eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyzdb-eval",
        description="Run one Python expression or statement block against a pyzdb database "
        "and print its value (the value of the last statement, if it is an expression). "
        f"Like the REPL, it talks to the server at {DEFAULT_URI} unless told otherwise.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--data", metavar="DIR", help="embedded: open this data directory in this process instead"
    )
    where.add_argument(
        "--connect", metavar="URI", help=f"a pyzdb-server's URI (default {DEFAULT_URI})"
    )
    parser.add_argument("--version", action="version", version=version_line("pyzdb-eval"))
    parser.add_argument("--json", action="store_true", help="print the value as JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds a request may take (remote; default 10)",
    )
    parser.add_argument(
        "--key", metavar="FILE", help="credential file from pyzdb-keys (remote; default $PYZDB_KEY)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("expr", nargs="?", help="the expression or statements to run")
    source.add_argument("-f", "--file", help="read the statements from FILE ('-': stdin)")
    source.add_argument(
        "--info", action="store_true", help="print the database's state (db.info()) and exit"
    )
    return parser


def open_target(
    uri: str | None, data: str | None, timeout: float | None, key: str | None = None
) -> Any:
    """The database a command-line tool works on: `data` embedded, else the server at `uri`
    (default `DEFAULT_URI`). Both tools agree: no flag means the quick-start server, never a
    directory silently created here."""
    if data is not None:
        from pyzdb.embedded import open as open_embedded

        return open_embedded(data)
    from pyzdb.net.client import connect
    from pyzdb.net.commands import DEFAULT_TIMEOUT

    return connect(
        uri or DEFAULT_URI, timeout=DEFAULT_TIMEOUT if timeout is None else timeout, key=key
    )


def print_out(text: str) -> None:
    """Print to stdout; a reader that went away (`| head`) ends the program quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        quiet_broken_pipe()


def quiet_broken_pipe() -> None:
    """Exit as a Unix tool does when its reader closes the pipe: no traceback, status 141.

    stdout is pointed at /dev/null first, so Python's final flush does not raise again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise SystemExit(141)


def eval_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pyzdb-eval`."""
    parser = _eval_parser()
    args = parser.parse_args(argv)
    if args.expr is None and args.file is None and not args.info:
        parser.error("give an expression, -f FILE or --info")
    if args.file == "-":
        source = sys.stdin.read()
    elif args.file:
        with open(args.file, encoding="utf-8") as handle:
            source = handle.read()
    else:
        source = args.expr
    try:
        with open_target(args.connect, args.data, args.timeout, args.key) as db:
            value = db.info() if args.info else db.execute(source)
    except Exception as error:  # every failure becomes one line on stderr and status 1
        print(format_error(error), file=sys.stderr)
        return 1
    if args.info and not args.json:
        print_out(format_info(value))
    else:
        print_out(format_value(value, args.json))
    return 0


__all__ = [
    "eval_main",
    "open_target",
    "print_out",
    "format_value",
    "format_error",
    "to_json",
]
