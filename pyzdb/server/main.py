"""`pyzdb-server`'s entry point: parse the options, then serve under a supervisor (or not).

The supervisor/worker contract (`pyzdb.server.supervisor`): the supervisor forks a worker that
runs `_serve`, which recovers the data directory, binds, and calls `ready()` once it serves.
The worker writes each query or execute it evaluates to the shared `InFlight` page (who sent
it, by when it must end) and clears it after; the supervisor kills a worker past that
deadline, and hands the request it was running to the next worker in `quarantine`, whose
resend then gets an error, never a second run. With `--no-supervisor` the process serves
itself, without the page. With `--front` the supervisor binds the public endpoint and the
worker a private one behind it (`pyzdb.server.front`); `--shadow-for PID` is how the front
starts its read-only copy (`pyzdb.server.shadow`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pyzdb.errors import Error
from pyzdb.server.loop import Server
from pyzdb.server.options import ServerConfig, build_parser, config_from_args

log = logging.getLogger("pyzdb.server")


def server_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `pyzdb-server`: exit 0 after a clean stop (SIGINT/SIGTERM), else 1/2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=("%(asctime)s [shadow] " if args.shadow_for else "%(asctime)s ")
        + "%(name)s %(levelname)s %(message)s",
    )
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"pyzdb-server: {exc}", file=sys.stderr)
        return 2
    if args.no_supervisor:
        return _serve(config, None, {}, None)
    from pyzdb.server.supervisor import Supervisor, die_with_parent

    if args.shadow_for:
        die_with_parent(args.shadow_for)
    front = None
    if config.front:
        from pyzdb.server.front import Front

        try:
            front = Front(config, args.kill_grace, args.verbose)
        except Error as exc:
            log.error("cannot start: %s", exc)
            return 1
        config = front.worker_config(config)
    worker_config = config

    def serve(
        inflight: Any, quarantine: dict[tuple[bytes, int], Any], ready: Callable[[], None]
    ) -> int:
        return _serve(worker_config, inflight, quarantine, ready)

    return Supervisor(serve, config.data, args.kill_grace, front).run()


def _serve(
    config: ServerConfig,
    inflight: Any,
    quarantine: dict[tuple[bytes, int], Any],
    ready: Callable[[], None] | None,
) -> int:
    """Recover, bind and serve until stopped (the worker of the supervisor, or the process)."""
    try:
        server = Server(config)
    except ValueError as exc:
        print(f"pyzdb-server: {exc}", file=sys.stderr)
        return 2
    except (Error, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    server.supervise(inflight, quarantine)
    report = server.recovery
    log.info(
        "recovered %s: checkpoint seq %d, %d records (%d effects) replayed in %.3f s",
        config.data,
        report.checkpoint_seq,
        report.records_replayed,
        report.effects_replayed,
        report.seconds,
    )
    log.info(
        "serving on %s%s (fsync %s, lease %g s)",
        server.public,
        " through the front" if config.front else "",
        config.fsync,
        config.lease,
    )
    server.install_signal_handlers()
    if ready is not None:
        ready()
    status = server.serve_forever()
    log.info("stopped")
    return status


__all__ = ["server_main"]
