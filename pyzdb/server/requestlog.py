"""What the server logs about one request: a line per request under `-v`, and failures.

Why levels differ by cause: a refusal by the sandbox (`SecurityError`) or a syntax error is
almost always a person's typo, worth an INFO line; an overrun or a malformed message is what a
hostile or broken client causes, worth a WARNING. Both go through the server's throttle, so a
flood cannot fill the disk through the log (`Throttle`). A query's own exception (`KeyError`) is the
caller's business: DEBUG.
"""

from __future__ import annotations

import logging
import time

from pyzdb.errors import LimitExceeded, ProtocolError, SecurityError
from pyzdb.net.messages import Request

log = logging.getLogger("pyzdb.server")

#: Errors that mean a request was refused rather than failed on its own terms.
REFUSALS = (SecurityError, LimitExceeded, SyntaxError, ProtocolError)
#: Refusals a typo causes: logged at INFO, not WARNING.
_TYPO_REFUSALS = (SecurityError, SyntaxError)
#: Bad-input warnings logged per second; the rest are counted and summarised, so a hostile
#: peer cannot fill the disk through the log.
WARNINGS_PER_SECOND = 10


class Throttle:
    """At most `rate` log lines per second; the lines it swallows are counted and summarised."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._window = 0.0
        self._count = 0
        self._dropped = 0

    def warning(self, message: str, *args: object) -> None:
        self.log(logging.WARNING, message, *args)

    def log(self, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window >= 1.0:
            if self._dropped:
                log.warning("... and %d more bad messages in the last second", self._dropped)
            self._window, self._count, self._dropped = now, 0, 0
        if self._count < self.rate:
            self._count += 1
            log.log(level, message, *args)
        else:
            self._dropped += 1


def log_failure(throttle: Throttle, request: Request, exc: Exception) -> str:
    """Log a failed request at the level its cause deserves; return its outcome for the
    request counters: "refused" or "failed"."""
    refused = isinstance(exc, REFUSALS)
    if not refused:
        level = logging.DEBUG
    elif isinstance(exc, _TYPO_REFUSALS):
        level = logging.INFO
    else:
        level = logging.WARNING
    if log.isEnabledFor(level):
        throttle.log(
            level,
            "request %d (%s) of session %s failed: %s: %s",
            request.id,
            request.op,
            request.session.hex() or "-",
            type(exc).__name__,
            exc,
        )
    return "refused" if refused else "failed"


def log_request(request: Request, reply: bytes, started: float, outcome: str) -> None:
    """One line per request (`pyzdb-server -v`): op, time, sizes, outcome, source excerpt.

    Tests count evaluations by its "request N (op) of session S evaluated in T s" prefix."""
    elapsed = time.perf_counter() - started
    source = request.source if request.op in ("query", "execute") else ""
    excerpt = source if len(source) <= 80 else source[:77] + "..."
    log.debug(
        "request %d (%s) of session %s evaluated in %.3f s (%.2f ms), reply %d bytes, "
        "%d source bytes, %d param(s), %s%s",
        request.id,
        request.op,
        request.session.hex() or "-",
        elapsed,
        elapsed * 1000,
        len(reply),
        len(source.encode("utf-8", "surrogatepass")),
        len(request.params or {}),
        outcome,
        f": {excerpt!r}" if excerpt else "",
    )


__all__ = ["REFUSALS", "WARNINGS_PER_SECOND", "Throttle", "log_failure", "log_request"]
