"""Console scripts: `pyzdb-eval` (one-shot, scriptable).

`pyzdb-eval` runs one expression or statement block and prints its value: `repr` by default
(what you would see in Python), or JSON with `--json` for pipes. Errors go to stderr in one
line plus the query position, and the exit status is 1, so shell scripts can test it.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Sequence
from typing import Any

from .values import File
from .version import version_line


def to_json(value: Any) -> Any:
    """JSON has no tuples, bytes, sets or non-string keys: map them to the nearest JSON."""
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
    """`KeyError: 'x'` plus the notes that point into the query."""
    lines = [f"{type(error).__name__}: {error}"]
    lines.extend(getattr(error, "__notes__", ()))
    return "\n".join(lines)


def _eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyzdb-eval",
        description="Run one Python expression or statement block against a pyzdb database "
        "and print its value (the value of the last expression statement).",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data", metavar="DIR", help="embedded: open this data directory")
    where.add_argument("--connect", metavar="URI", help="remote: a pyzdb-server's URI")
    parser.add_argument("--version", action="version", version=version_line("pyzdb-eval"))
    parser.add_argument("--json", action="store_true", help="print the value as JSON")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds a request may take (remote; default 10)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("expr", nargs="?", help="the expression or statements to run")
    source.add_argument("-f", "--file", help="read the statements from FILE ('-': stdin)")
    return parser


def _open_database(args: argparse.Namespace) -> Any:
    if args.connect:
        from .client import connect

        return connect(args.connect, timeout=args.timeout)
    from .embedded import open as open_embedded

    return open_embedded(args.data or "./pyzdb-data")


def eval_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pyzdb-eval`."""
    args = _eval_parser().parse_args(argv)
    if args.file == "-":
        source = sys.stdin.read()
    elif args.file:
        with open(args.file, encoding="utf-8") as handle:
            source = handle.read()
    else:
        source = args.expr
    try:
        with _open_database(args) as db:
            value = db.execute(source)
    except Exception as error:  # every failure becomes one line on stderr and status 1
        print(format_error(error), file=sys.stderr)
        return 1
    print(format_value(value, args.json))
    return 0


__all__ = ["eval_main", "format_value", "format_error", "to_json"]
