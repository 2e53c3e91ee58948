"""`pyzdb-keys`: the console script that manages the CURVE keys and the access list of
`pyzdb-server --keys DIR`; the files themselves are `pyzdb.net.keys`'s."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pyzdb.net.keys import (
    ROLES,
    KeyFileError,
    add_key,
    init_keys,
    load_access,
    revoke_key,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyzdb-keys",
        description="Manage the CURVE keys and access list of pyzdb-server --keys DIR.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="create the server keypair and an empty access list")
    init.add_argument("dir")
    add = commands.add_parser("add", help="create a client key and its credential file")
    add.add_argument("dir")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument(
        "--scope", metavar="PATH", help="limit the key to a subtree, like \"db['tenants']['acme']\""
    )
    add.add_argument("--out", metavar="FILE", help="credential file (default ./NAME.pyzdb-key)")
    listing = commands.add_parser("list", help="show the keys on the access list")
    listing.add_argument("dir")
    revoke = commands.add_parser("revoke", help="take a key off the access list")
    revoke.add_argument("dir")
    revoke.add_argument("name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pyzdb-keys`: 0 on success, 1 with one line on stderr otherwise."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "init":
            init_keys(args.dir)
            print(f"created the server keys and an empty access list in {args.dir}")
        elif args.command == "add":
            target = add_key(args.dir, args.name, args.role, args.scope, args.out)
            print(
                f"added {args.name} ({args.role}"
                f"{', scope ' + args.scope if args.scope else ''}); hand {target} to that "
                "client (it holds a secret key)"
            )
        elif args.command == "list":
            entries, problems = load_access(args.dir)
            for entry in entries.values():
                print(f"{entry.name}\t{entry.role}\t{entry.scope_text or '-'}\t{entry.public}")
            for problem in problems:
                print(f"warning: {problem}", file=sys.stderr)
        else:
            revoke_key(args.dir, args.name)
            print(f"revoked {args.name}: a running server refuses it from its next message")
    except (KeyFileError, OSError) as exc:
        print(f"pyzdb-keys: {exc}", file=sys.stderr)
        return 1
    return 0


__all__ = ["main"]
