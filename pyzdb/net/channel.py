"""The socket under a connection: one DEALER per URI, thrown away and reopened when it drops.

Both clients use it: `Channel` sends, receives (blocking with a timeout, or awaiting) and
watches its socket's monitor for a dropped connection and a refused key; `Channels` keeps one
per URI for a connection. What to send and when to resend is `pyzdb.net.commands`'s.
"""

from __future__ import annotations

import time
from typing import cast

import zmq
import zmq.asyncio

from pyzdb.errors import ConnectionError
from pyzdb.net import curve, liveness
from pyzdb.net.keys import Credential

#: Sockets a request is offered to when each one's handshake fails before the send (the
#: second failure of a key-less or wrong-key socket already raises AuthenticationError).
SEND_TRIES = 3

#: pyzmq's flags as plain ints: its enum flags cost an `enum` call per use on the hot path.
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
_RCVTIMEO = int(zmq.RCVTIMEO)
#: While a CURVE handshake is unfinished, the socket is polled in slices this long (s) between
#: looks at its monitor: a refused key is reported within about this much.
_HANDSHAKE_SLICE = 0.01


class Channel:
    """A DEALER socket to one URI that can be thrown away and reopened (lazy pirate).

    With a `zmq.asyncio.Context` its sockets are asyncio sockets, for `pyzdb.net.aio`.
    Its one monitor (`liveness.Watch`) tells a dropped connection (resend) and, until a
    handshake succeeded, a refused key (`curve`: AuthenticationError at once, never retried).
    """

    def __init__(
        self, context: zmq.Context, uri: str, credential: Credential | None = None
    ) -> None:
        self.context = context
        self.uri = uri
        self.credential = credential
        self.socket, self.watch = self._open()
        self._handshaken = False  # until then, receiving also watches the handshake
        self._reconnect = False  # a handshake with this URI succeeded before (`curve`)
        self._strikes = 0  # handshakes failed "with no detail" in a row (`curve.is_refusal`)
        self._judged = False  # this socket's failed handshake was counted
        self._rcvtimeo = -1  # the socket's RCVTIMEO, ms (-1: wait forever, libzmq's default)

    def _open(self) -> tuple[zmq.Socket, liveness.Watch]:
        socket = self.context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        liveness.configure(socket)
        curve.configure(socket, self.credential)
        watch = liveness.Watch(socket)
        try:
            socket.connect(self.uri)
        except zmq.ZMQError as exc:
            watch.close()
            raise ConnectionError(f"cannot connect to {self.uri!r}: {exc}") from None
        return socket, watch

    def lost(self) -> bool:
        """The connection dropped since the request was sent: resend it (see `liveness`)."""
        return self.watch.dropped()

    def reset(self) -> None:
        self.close()
        self.socket, self.watch = self._open()
        self._handshaken = self._judged = False
        self._rcvtimeo = -1

    def receive(self, timeout: float) -> list[bytes] | None:
        """The next message's frames, or None after `timeout` seconds without one.

        For a sync socket: a blocking receive bounded by RCVTIMEO, as a REQ socket waits. It
        costs half the system calls of `Socket.poll` + `recv_multipart` (a poll makes libzmq
        check the socket before and after waiting), and no Poller object or enum arithmetic.
        As with `Socket.poll`, the wait is in whole milliseconds, rounded down.
        """
        if not self._handshaken:
            return self._receive_watching(timeout)
        socket = self.socket
        wait = int(timeout * 1000)
        if wait != self._rcvtimeo:
            socket.setsockopt(_RCVTIMEO, wait)
            self._rcvtimeo = wait
        try:
            frames = [socket.recv()]
        except zmq.Again:
            return None
        while socket.getsockopt(_RCVMORE):
            frames.append(socket.recv(_NOBLOCK))
        return frames

    def send(self, frame: bytes) -> None:
        """Send one request frame without ever blocking.

        A DEALER queues what it sends while it connects, so this succeeds at once, except on a
        socket whose handshake failed: libzmq then dropped its only peer and does not reconnect
        (`curve.configure`), and a blocking send would wait forever. That case raises what the
        monitor reported (AuthenticationError). The fresh socket that replaces it can meet
        the same failure before the send on a loaded machine, which is a second strike.
        """
        self.watch.arm()
        for _ in range(SEND_TRIES):
            try:
                self.socket.send(frame, _NOBLOCK)
                return
            except zmq.Again:
                self._refused()
        raise self._unreachable()

    async def send_async(self, frame: bytes) -> None:
        """`send` for a `zmq.asyncio` socket."""
        self.watch.arm()
        for _ in range(SEND_TRIES):
            try:
                await self._async_socket().send(frame, _NOBLOCK)
                return
            except zmq.Again:
                self._refused()
        raise self._unreachable()

    def _unreachable(self) -> ConnectionError:
        return ConnectionError(
            f"{self.uri} dropped {SEND_TRIES} connections in a row during their handshake"
        )

    async def receive_async(self) -> list[bytes]:
        """The frames of the message `poll_async` saw waiting, from a `zmq.asyncio` socket."""
        return await self._async_socket().recv_multipart()

    def _async_socket(self) -> zmq.asyncio.Socket:
        """The socket, typed as what a `zmq.asyncio` context made it (the `*_async` methods)."""
        return cast(zmq.asyncio.Socket, self.socket)

    def _refused(self) -> None:
        """The socket has no peer (its handshake failed): replace it, and raise
        AuthenticationError if that failure means the key was refused."""
        kind = self.watch.handshake_failure(wait=1.0)
        refused = kind is None or self._refusal(kind)
        self.reset()
        if refused:
            raise curve.refusal(kind, self.credential, self.uri)

    def _refusal(self, kind: int) -> bool:
        """Count this socket's failed handshake once; does it mean a refused key?"""
        if not self._judged:
            self._judged = True
            self._strikes += 1
        return curve.is_refusal(kind, self._reconnect, self._strikes)

    def _handshake_done(self) -> bool:
        """True once a handshake succeeded; AuthenticationError (socket replaced) if the key
        was refused; False while none finished (or one failed as a dropped connection does:
        the request's resend schedule handles it)."""
        state = self.watch.handshake()
        if state is True:
            self._handshaken = self._reconnect = True
            self._strikes = 0
        elif state is not None and self._refusal(state):
            self.reset()
            raise curve.refusal(state, self.credential, self.uri)
        return self._handshaken

    def _receive_watching(self, timeout: float) -> list[bytes] | None:
        """`receive` while the handshake is unfinished: a refused key raises
        AuthenticationError at once (and the socket is replaced), not after the timeout."""
        deadline = time.monotonic() + timeout
        while not self._handshake_done():
            if self.socket.poll(_HANDSHAKE_SLICE * 1000):  # type: ignore[arg-type]  # pyzmq takes float ms (int() in Poller.poll)
                self._handshaken = True  # a reply came: the handshake succeeded
                break
            if time.monotonic() >= deadline:
                return None
        return self.receive(max(0.0, deadline - time.monotonic()))

    async def poll_async(self, timeout: float) -> bool:
        """For a `zmq.asyncio` socket: True once a message waits, False after `timeout`;
        a refused key raises AuthenticationError at once, as in `receive`."""
        deadline = time.monotonic() + timeout
        while not self._handshake_done():
            # ignore[call-arg]: pyzmq's _future.pyi gives Socket.poll the Poller's signature
            if await self._async_socket().poll(_HANDSHAKE_SLICE * 1000, zmq.POLLIN):  # type: ignore[call-arg]
                self._handshaken = True  # a reply came: the handshake succeeded
                return True
            if time.monotonic() >= deadline:
                return False
        return bool(
            await self._async_socket().poll(  # type: ignore[call-arg]  # as above
                max(0.0, deadline - time.monotonic()) * 1000, zmq.POLLIN
            )
        )

    def close(self) -> None:
        self.watch.close()  # closes the socket too, after switching its monitor off


class Channels:
    """A connection's channels, one per URI it talks to (the primary, each replica), all made
    with its context (sync or asyncio) and its key."""

    def __init__(self, context: zmq.Context, credential: Credential | None) -> None:
        self.context = context
        self.credential = credential
        self._by_uri: dict[str, Channel] = {}

    def get(self, uri: str) -> Channel:
        """The channel to `uri`, connected on first use."""
        channel = self._by_uri.get(uri)
        if channel is None:
            channel = self._by_uri[uri] = self.fresh(uri)
        return channel

    def fresh(self, uri: str) -> Channel:
        """A channel of its own, for another thread or task (a heartbeat): the caller closes it."""
        return Channel(self.context, uri, self.credential)

    def close(self) -> None:
        for channel in self._by_uri.values():
            channel.close()
        self._by_uri.clear()


__all__ = ["Channel", "Channels"]
