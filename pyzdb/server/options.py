"""`pyzdb-server`'s command line: its options, their checks, and the `ServerConfig` they make."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass

from pyzdb.changefeed import DEFAULT_RETAIN
from pyzdb.codec import MAX_REQUEST_SIZE
from pyzdb.errors import Error
from pyzdb.limits import DEFAULT_URI
from pyzdb.net.curve import credential_for
from pyzdb.server.replicaset import REPLICA_BACKLOG
from pyzdb.storage.durability import FsyncPolicy
from pyzdb.version import version_line

DEFAULT_DATA = "./pyzdb-data"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass
class ServerConfig:
    """What `pyzdb-server` is told on its command line (the defaults are the README's)."""

    data: str = DEFAULT_DATA
    bind: str = DEFAULT_URI
    fsync: FsyncPolicy = "always"
    #: Wall-time budget of one request, seconds (None: the sandbox's default).
    time_limit: float | None = None
    #: Seconds a lock holder may stay silent before its transaction is rolled back.
    lease: float = 10.0
    #: Largest request frame; ZeroMQ drops bigger ones before Python sees them.
    max_message: int = MAX_REQUEST_SIZE
    #: Allow binding a non-loopback address without authentication.
    insecure: bool = False
    #: Journal records kept readable after a checkpoint (change feeds, replicas).
    retain_journal: int = DEFAULT_RETAIN
    #: Follow the primary at this URI as a read-only replica.
    replica_of: str | None = None
    #: Records a primary keeps for a lagging replica beyond `retain_journal`.
    replica_backlog: int = REPLICA_BACKLOG
    #: Keys directory (`pyzdb-keys init`): CURVE on, every message checked (`pyzdb.server.auth`).
    keys: str | None = None
    #: Budget of each request of a scoped key (time s, steps, size), so no tenant starves others.
    scoped_time: float = 1.0
    scoped_steps: int = 5_000_000
    scoped_size: int = 1_000_000
    #: Resident size (bytes) no request may push the process past; None: no ceiling.
    max_memory: int | None = None
    #: Seconds one session may hold the lock, however often it renews its lease.
    lock_max_hold: float = 300.0
    #: The credential file a replica presents to a primary with `--keys` (None: `$PYZDB_KEY`).
    replica_key: str | None = None
    #: `--front`: the supervisor answers pings and reads while the worker is stuck.
    front: bool = False
    #: Seconds a request runs before the front calls the worker busy (`--busy-after`).
    busy_after: float = 0.25
    #: Messages arrive through a front (`pyzdb.server.front`): one more routing frame, the
    #: front's own, before the client's identity.
    behind_front: bool = False
    #: The endpoint clients use when it is not `bind` (the front's): the ENDPOINT file, info.
    public: str | None = None


def check_bind(uri: str, insecure: bool = False, keys: bool = False) -> None:
    """Refuse a bind address other machines could reach unless the server authenticates every
    connection (`keys`) or the operator said `--insecure`.

    Without keys, anything but loopback, `ipc://` or `inproc://` would hand the database to the
    network, as the original did.

    >>> check_bind("tcp://127.0.0.1:5555")
    >>> check_bind("tcp://0.0.0.0:5555", keys=True)
    >>> check_bind("tcp://0.0.0.0:5555")
    Traceback (most recent call last):
    ...
    ValueError: refusing to bind 'tcp://0.0.0.0:5555': it is not a loopback address ...
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("tcp", "ipc", "inproc"):
        raise ValueError(f"cannot bind {uri!r}: use tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    if scheme != "tcp" or insecure or keys:
        return
    host = rest.rpartition(":")[0].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"refusing to bind {uri!r}: it is not a loopback address and the server has no "
            "authentication without --keys DIR (see pyzdb-keys); bind 127.0.0.1 (or ipc://), "
            "or pass --insecure if a firewall guards it"
        )


def parse_size(text: str) -> int:
    """`--max-memory`'s argument: bytes, or a number with K, M, G or T (powers of 1024).

    >>> parse_size("512M"), parse_size("4GiB"), parse_size("1048576")
    (536870912, 4294967296, 1048576)
    """
    number = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = number[-1:] if number[-1:] in _UNITS else ""
    try:
        value = float(number[: len(number) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (say 512M or 4G)") from None
    if not 2**20 <= value <= 2**60:
        raise argparse.ArgumentTypeError(f"a memory ceiling of {text!r} makes no sense")
    return int(value)


def default_max_memory() -> int | None:
    """Half of the machine's memory, like a cautious `maxmemory`; None where unknown."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return None


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The config `build_parser()`'s `args` describe; ValueError (what to tell the operator) when
    they make no sense together."""
    if (
        args.lease <= 0
        or args.max_message <= 0
        or args.retain_journal < 0
        or args.replica_backlog < 0
        or not args.kill_grace > 0
        or not args.lock_max_hold > 0
    ):
        raise ValueError(
            "--lease, --max-message, --kill-grace and --lock-max-hold must be "
            "positive, --retain-journal and --replica-backlog >= 0"
        )
    if args.front:
        _check_front(args)
    if args.key is not None and not args.replica_of:
        raise ValueError(
            "--key is the credential a replica presents to its primary: "
            "use it with --replica-of URI"
        )
    if args.replica_of:
        try:
            credential_for(args.key)
        except Error as exc:
            raise ValueError(f"--key: {exc}") from None
    config = ServerConfig(
        args.data,
        args.bind,
        args.fsync,
        args.time_limit,
        args.lease,
        args.max_message,
        args.insecure,
        retain_journal=args.retain_journal,
        replica_of=args.replica_of,
        replica_backlog=args.replica_backlog,
        replica_key=args.key,
        keys=args.keys,
        scoped_time=args.scoped_time,
        scoped_steps=args.scoped_steps,
        scoped_size=args.scoped_size,
        max_memory=args.max_memory,
        lock_max_hold=args.lock_max_hold,
        front=args.front,
        busy_after=args.busy_after,
        behind_front=args.shadow_for is not None,
    )
    check_bind(config.bind, config.insecure, keys=config.keys is not None)
    return config


def _check_front(args: argparse.Namespace) -> None:
    """`--front` refuses what it cannot carry through to the worker (README, Supervision)."""
    if not args.busy_after > 0:
        raise ValueError("--busy-after must be positive")
    for name, given in (
        ("--no-supervisor", args.no_supervisor),
        ("--keys", args.keys),
        ("--replica-of", args.replica_of),
    ):
        if given:
            raise ValueError(f"--front cannot be combined with {name}: {_FRONT_REFUSALS[name]}")


_FRONT_REFUSALS = {
    "--no-supervisor": "the front is the supervisor process",
    "--keys": "the front would end CURVE and the worker would no longer know each key "
    "(roles, scopes); serve keyed clients without --front",
    "--replica-of": "its reads come from a replica of the worker, and a replica's worker "
    "does not feed replicas",
}


def build_parser() -> argparse.ArgumentParser:
    """`pyzdb-server`'s options (`config_from_args` turns them into a `ServerConfig`)."""
    parser = argparse.ArgumentParser(
        prog="pyzdb-server",
        description="Serve a pyzdb data directory over ZeroMQ (loopback only by default).",
    )
    parser.add_argument(
        "--data",
        default=DEFAULT_DATA,
        metavar="DIR",
        help=f"data directory, created if needed (default {DEFAULT_DATA})",
    )
    parser.add_argument(
        "--bind",
        default=DEFAULT_URI,
        metavar="URI",
        help=f"ZeroMQ address to listen on (default {DEFAULT_URI})",
    )
    parser.add_argument(
        "--fsync",
        choices=("always", "everysec", "no"),
        default="always",
        help="when the journal reaches the disk (default always: before every reply)",
    )
    parser.add_argument(
        "--time-limit", type=float, metavar="S", help="wall-time budget of one request in seconds"
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a silent lock holder keeps the lock (default 10)",
    )
    parser.add_argument(
        "--max-message",
        type=int,
        default=MAX_REQUEST_SIZE,
        metavar="BYTES",
        help="largest request accepted (default 16 MiB)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback --bind without authentication"
    )
    parser.add_argument(
        "--retain-journal",
        type=int,
        default=DEFAULT_RETAIN,
        metavar="N",
        help="journal records kept readable after a checkpoint, for change "
        f"feeds and replicas (default {DEFAULT_RETAIN})",
    )
    parser.add_argument(
        "--replica-of", metavar="URI", help="serve read-only, following the primary at URI"
    )
    parser.add_argument(
        "--key",
        metavar="FILE",
        help="with --replica-of: the credential file (pyzdb-keys add ... --role "
        "admin) this replica presents to a primary started with --keys "
        "(default $PYZDB_KEY); a key the primary refuses is logged and retried "
        "while the replica keeps serving what it has",
    )
    parser.add_argument(
        "--replica-backlog",
        type=int,
        default=REPLICA_BACKLOG,
        metavar="N",
        help="records kept for a lagging replica beyond "
        f"--retain-journal; past it, it resyncs (default {REPLICA_BACKLOG})",
    )
    parser.add_argument(
        "--keys",
        metavar="DIR",
        help="CURVE keys and access list made by "
        "pyzdb-keys: every connection authenticated, roles and scopes enforced",
    )
    parser.add_argument(
        "--scoped-time",
        type=float,
        default=1.0,
        metavar="S",
        help="wall-time budget of a scoped key's request (default 1)",
    )
    parser.add_argument(
        "--scoped-steps",
        type=int,
        default=5_000_000,
        metavar="N",
        help="loop-step budget of a scoped key's request (default 5000000)",
    )
    parser.add_argument(
        "--scoped-size",
        type=int,
        default=1_000_000,
        metavar="N",
        help="largest object a scoped key's request may build (default 1000000)",
    )
    parser.add_argument("--version", action="version", version=version_line("pyzdb-server"))
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    parser.add_argument(
        "--kill-grace",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds past its time budget a request may run inside one C "
        "call before the supervisor kills and restarts the worker (default 1)",
    )
    parser.add_argument(
        "--max-memory",
        type=parse_size,
        default=default_max_memory(),
        metavar="SIZE",
        help="resident size a request may not push the "
        "server past, e.g. 512M or 4G (default: half of the machine's memory)",
    )
    parser.add_argument(
        "--lock-max-hold",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds one connection may hold the lock, even while it keeps "
        "renewing its lease (default 300)",
    )
    parser.add_argument(
        "--no-supervisor",
        action="store_true",
        help="serve in this process, without a supervisor to restart it",
    )
    parser.add_argument(
        "--front",
        action="store_true",
        help="the supervisor fronts the worker: while a request runs past --busy-after "
        "(or the worker restarts), it answers ping itself and reads from a read-only "
        "copy, so other clients are not stuck behind it. Costs a hop on every request "
        "(about 0.1 ms) and doubles the memory (the copy holds the whole database); not "
        "with --keys, --replica-of or --no-supervisor",
    )
    parser.add_argument(
        "--busy-after",
        type=float,
        default=0.25,
        metavar="S",
        help="with --front: seconds a request runs before the front answers "
        "for the worker (default 0.25)",
    )
    # The front starts its read-only copy with this: the pid of the front, whose death ends it.
    parser.add_argument("--shadow-for", type=int, metavar="PID", help=argparse.SUPPRESS)
    return parser


__all__ = [
    "DEFAULT_DATA",
    "ServerConfig",
    "check_bind",
    "config_from_args",
    "default_max_memory",
    "parse_size",
    "build_parser",
]
