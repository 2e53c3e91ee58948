"""The exception families of pyzdb, shared by the engine, the server and both clients.

Families are split by who is at fault (as redis-py and h11 do): the query was refused
(`SecurityError`), it ran out of budget (`LimitExceeded`), the transport failed
(`ConnectionError`), or a peer broke the protocol (`ProtocolError`). An exception raised by the
query's own code is *not* wrapped: it is re-raised as the same built-in type, so callers keep
writing `except KeyError`.
"""

from __future__ import annotations

import builtins


class Error(Exception):
    """Root of every exception pyzdb itself raises."""


class SecurityError(Error):
    """The sandbox refused the request (forbidden syntax, name, attribute or a write in a query)."""


class LimitExceeded(Error):
    """A per-request budget ran out; `budget` names which one (time, steps, size, result, ...)."""

    def __init__(self, message: str, budget: str = "") -> None:
        super().__init__(message)
        self.budget = budget


# Named as the builtin and a subclass of it, so `except ConnectionError` in a client catches it.
class ConnectionError(Error, builtins.ConnectionError):
    """The server could not be reached or did not answer in time."""


class ProtocolError(Error):
    """A message on the wire was malformed, oversized or of an unknown version."""


class LockTimeout(Error, TimeoutError):
    """The database lock could not be acquired before the caller's timeout."""


class ReadOnlyError(Error):
    """A write (or undo, lock, checkpoint) was sent to a read-only replica; the message names
    the primary to send it to."""


class HistoryLost(Error):
    """A change feed or replica asked for records the server no longer retains: resuming would
    skip changes, so it refuses instead (start again from the current value or a checkpoint)."""


class ReplicaBehind(Error):
    """A replica had not applied the seq a read must see (read-your-writes) within the time the
    read could wait; the client asks another replica or the primary instead."""


class AuthenticationError(Error):
    """A key was refused: wrong, unknown or revoked, a server key that does not match, or a
    credential file that cannot be trusted (readable by others). Never retried."""


#: Built-in exception types a query may raise and that cross the wire by name. Anything not in
#: this table reaches the caller as a plain `Error` carrying the original type's name.
QUERY_EXCEPTIONS: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        ArithmeticError,
        AssertionError,
        AttributeError,
        IndexError,
        KeyError,
        LookupError,
        NameError,
        NotImplementedError,
        OverflowError,
        RecursionError,
        RuntimeError,
        StopIteration,
        TypeError,
        UnboundLocalError,
        UnicodeError,
        ValueError,
        ZeroDivisionError,
        Exception,
    )
}

#: pyzdb's own exceptions, by wire name.
PYZDB_EXCEPTIONS: dict[str, type[Error]] = {
    cls.__name__: cls
    for cls in (
        Error,
        SecurityError,
        LimitExceeded,
        ConnectionError,
        ProtocolError,
        LockTimeout,
        ReadOnlyError,
        HistoryLost,
        ReplicaBehind,
        AuthenticationError,
    )
}

__all__ = [
    "Error",
    "SecurityError",
    "LimitExceeded",
    "ConnectionError",
    "ProtocolError",
    "LockTimeout",
    "ReadOnlyError",
    "HistoryLost",
    "ReplicaBehind",
    "AuthenticationError",
    "QUERY_EXCEPTIONS",
    "PYZDB_EXCEPTIONS",
]
