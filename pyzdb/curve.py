"""The client's side of `pyzdb-server --keys`: a CURVE socket and a watch on its handshake.

A refused CURVE handshake never produces a message: libzmq just closes the connection and
tries again, so a client that only waited for a reply would report a timeout seconds later,
and retry a key that can never work. The socket's monitor reports the handshake instead, at
once: `HandshakeWatch` reads it while the first reply is awaited and turns a failure into
`AuthenticationError` (never retried), then gets out of the way once a handshake succeeded.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from typing import Any

import zmq

from .errors import AuthenticationError
from .keys import Credential, load_credential

#: The environment variable naming the credential file when `key=` is not given.
KEY_ENV = "PYZDB_KEY"
_SUCCEEDED = int(zmq.EVENT_HANDSHAKE_SUCCEEDED)
_FAILED_AUTH = int(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_FAILED_PROTOCOL = int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
_FAILED_NO_DETAIL = int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_WATCHED = _SUCCEEDED | _FAILED_AUTH | _FAILED_PROTOCOL | _FAILED_NO_DETAIL


def credential_for(key: str | os.PathLike[str] | None) -> Credential | None:
    """The credential file `key` names, else the one `$PYZDB_KEY` names, else None."""
    if key is None:
        key = os.environ.get(KEY_ENV) or None
    return None if key is None else load_credential(key)


def apply(socket: zmq.Socket, credential: Credential | None) -> HandshakeWatch:
    """Make `socket` a CURVE client with `credential` (before connect); watch its handshake.

    Without a credential the handshake is watched too (it costs ~25 us per new socket): a
    server started with `--keys` then fails it at once, and the client says a key is needed
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
    return HandshakeWatch(socket, credential)


class HandshakeWatch:
    """The monitor of one socket's CURVE handshakes, until one succeeds."""

    def __init__(self, socket: zmq.Socket, credential: Credential | None) -> None:
        self.credential = credential
        self._socket = socket
        self.monitor: Any = socket.get_monitor_socket(_WATCHED)

    def check(self, uri: str) -> bool:
        """Read the events so far: True once a handshake succeeded (the watch is then closed),
        AuthenticationError for a failed one, False while none finished. Sync sockets only."""
        while self.monitor.poll(0):
            if self._event(self.monitor.recv_multipart(), uri):
                return True
        return False

    def _event(self, frames: list[bytes], uri: str) -> bool:
        # A monitor event (libzmq 4): frame 1 is the event number (u16) and its value (u32),
        # frame 2 the endpoint. Parsed here: `zmq.utils.monitor` would import asyncio.
        kind = struct.unpack("=hi", frames[0][:6])[0]
        if kind == _SUCCEEDED:
            self.close()
            return True
        if self.credential is None:
            raise AuthenticationError(
                f"the handshake with {uri} failed: that server requires a key (it was started "
                "with --keys): connect with key='NAME.pyzdb-key' or set $PYZDB_KEY")
        name = self.credential.name
        if kind == _FAILED_AUTH:
            raise AuthenticationError(
                f"{uri} refused the key {name!r} ({self.credential.path}): it is unknown to "
                "that server or was revoked")
        if kind == _FAILED_PROTOCOL:
            raise AuthenticationError(
                f"the CURVE handshake with {uri} failed: that server does not use keys (start "
                "it with --keys DIR), or speaks another protocol")
        raise AuthenticationError(
            f"the CURVE handshake with {uri} failed: the server's key is not the one in "
            f"{self.credential.path} (was the server key rotated, or is this another server?)")

    def failure(self, uri: str) -> None:
        """Raise the failure the monitor reported, reading it blocking (up to 1 s): the caller
        knows the handshake failed (the socket lost its peer), the event may still be on its
        way. Works for sync and asyncio sockets alike (it reads the underlying socket)."""
        monitor = zmq.Socket.shadow(self.monitor.underlying)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if monitor.poll(50):
                self._event(monitor.recv_multipart(), uri)

    async def check_async(self, uri: str) -> bool:
        """`check` for a socket of a `zmq.asyncio` context."""
        while await self.monitor.poll(0):
            if self._event(await self.monitor.recv_multipart(), uri):
                return True
        return False

    def close(self) -> None:
        """Stop the events *before* closing their receiver (see `apply`)."""
        if self.monitor is not None:
            try:
                self._socket.disable_monitor()
            except zmq.ZMQError:  # the socket is closed already
                pass
            self.monitor.close(linger=0)
            self.monitor = None


__all__ = ["KEY_ENV", "HandshakeWatch", "apply", "credential_for"]
