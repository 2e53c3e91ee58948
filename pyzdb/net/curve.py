"""The client's side of `pyzdb-server --keys`: a CURVE socket and a watch on its handshake.

A refused CURVE handshake never produces a message: libzmq just closes the connection and
tries again, so a client that only waited for a reply would report a timeout seconds later,
and retry a key that can never work. The socket's monitor reports the handshake instead, at
once: the client reads it (through `liveness.Watch`, the socket's one monitor) while the first
reply is awaited, and `refusal` turns a failure into `AuthenticationError` (never retried).
"""

from __future__ import annotations

import contextlib
import os

import zmq

from pyzdb.errors import AuthenticationError
from pyzdb.net.keys import Credential, load_credential

#: The environment variable naming the credential file when `key=` is not given.
KEY_ENV = "PYZDB_KEY"
_FAILED_AUTH = int(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_FAILED_PROTOCOL = int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
_FAILED_NO_DETAIL = int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


def credential_for(key: str | os.PathLike[str] | None) -> Credential | None:
    """The credential file `key` names, else the one `$PYZDB_KEY` names, else None."""
    if key is None:
        key = os.environ.get(KEY_ENV) or None
    return None if key is None else load_credential(key)


def configure(socket: zmq.Socket, credential: Credential | None) -> None:
    """Make `socket` a CURVE client with `credential` (before connect).

    Without a credential the handshake is watched all the same (`liveness.Watch` reports it):
    a server started with `--keys` then fails it at once, and the client says a key is needed
    instead of timing out.

    A socket whose handshake failed does not reconnect (`RECONNECT_STOP_HANDSHAKE_FAILED`):
    libzmq would otherwise retry every 0.1 s, and each failure is a monitor event. Monitor
    events are sent *blocking* from libzmq's I/O thread, so a few hundred unread ones (or one
    sent to a monitor already closed) would stall every socket of the process's context.
    """
    with contextlib.suppress(AttributeError, zmq.ZMQError):  # a libzmq without the option
        socket.setsockopt(zmq.RECONNECT_STOP, zmq.RECONNECT_STOP_HANDSHAKE_FAILED)
    if credential is not None:
        socket.curve_publickey = credential.public
        socket.curve_secretkey = credential.secret
        socket.curve_serverkey = credential.server


def is_refusal(kind: int, reconnect: bool, strikes: int) -> bool:
    """Does a failed handshake mean the key was refused (never retried)?

    A failure "with no detail" is what a wrong server key, or no key for a server with keys,
    gives (over ipc), but also what a server that died mid-handshake gives. It counts as a
    refusal only on a channel that never completed a handshake with that URI and failed so
    `strikes` >= 2 times in a row (a fresh socket was tried); otherwise it is a dropped
    connection, resent like any other.
    """
    return kind != _FAILED_NO_DETAIL or (not reconnect and strikes >= 2)


def refusal(kind: int | None, credential: Credential | None, uri: str) -> AuthenticationError:
    """The error for a failed handshake (`kind` is its monitor event; None: not reported)."""
    if kind is None:
        return AuthenticationError(
            f"the handshake with {uri} failed on a reconnect: was the server restarted with "
            "other keys, or this key revoked?"
        )
    if credential is None:
        return AuthenticationError(
            f"the handshake with {uri} failed: that server requires a key (it was started "
            "with --keys): connect with key='NAME.pyzdb-key' or set $PYZDB_KEY"
        )
    name = credential.name
    if kind == _FAILED_AUTH:
        return AuthenticationError(
            f"{uri} refused the key {name!r} ({credential.path}): it is unknown to "
            "that server or was revoked"
        )
    if kind == _FAILED_PROTOCOL:
        return AuthenticationError(
            f"the CURVE handshake with {uri} failed: that server does not use keys (start "
            "it with --keys DIR), or speaks another protocol"
        )
    return AuthenticationError(
        f"the CURVE handshake with {uri} failed: the server's key is not the one in "
        f"{credential.path} (was the server key rotated, or is this another server?)"
    )


__all__ = ["KEY_ENV", "configure", "credential_for", "is_refusal", "refusal"]
