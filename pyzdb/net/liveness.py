"""Is the connection under a request still there? ZMTP heartbeats plus a socket monitor.

A request that is merely slow must be evaluated once and its reply delivered to the socket
that sent it, so the client may not resend on a timer: a timer cannot tell a busy server from
a dead one. The connection can. Every client socket runs ZMTP heartbeats
(`ZMQ_HEARTBEAT_IVL`/`TIMEOUT`): libzmq's I/O threads send and answer them on both ends, also
while the server's Python is busy evaluating, so a live server keeps the connection up however
long it works, and a dead, restarted or frozen one drops it (a killed process at once, by the
socket closing; a frozen one after `HEARTBEAT_TIMEOUT`). A monitor on the socket reports each
drop as `EVENT_DISCONNECTED`, and `Watch.dropped()` says whether one came since the request
was sent: only then is the request resent.

A request sent while no server listens is not lost: a connecting DEALER queues it, and libzmq
delivers it once the server is up. Only the bytes a dead connection had already carried are.

The same monitor reports the socket's handshakes (`Watch.handshake`): a refused CURVE key never
produces a message, only a failed handshake, which `pyzdb.net.curve` turns into an error at once.
One monitor serves both because libzmq allows one per socket.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
import time
import weakref

import zmq

#: Milliseconds between heartbeats, and without any traffic before the connection counts as
#: dead. Generous: two loaded cores can stall a process for a second, and the request's own
#: deadline bounds the call anyway.
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 10_000

_ids = itertools.count(1)
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_DISCONNECTED = int(zmq.EVENT_DISCONNECTED)
_SUCCEEDED = int(zmq.EVENT_HANDSHAKE_SUCCEEDED)
_FAILED = (
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    | int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
    | int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
)


def configure(socket: zmq.Socket) -> None:
    """Turn on ZMTP heartbeats on a socket before it connects."""
    socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)


class Watch:
    """Disconnect and handshake events of one socket, read without blocking (sync and asyncio
    sockets)."""

    def __init__(self, socket: zmq.Socket) -> None:
        address = f"inproc://pyzdb-liveness-{os.getpid()}-{next(_ids)}"
        socket.monitor(address, _DISCONNECTED | _SUCCEEDED | _FAILED)
        # A plain (sync) socket on the same libzmq context, also under `zmq.asyncio`:
        # reading it never awaits.
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.shadow(socket.context.underlying)
        self._events = context.socket(zmq.PAIR)
        self._events.setsockopt(zmq.LINGER, 0)
        # No high-water mark: libzmq sends monitor events from its I/O thread and would block
        # it (every socket of the context) on a full pipe; unread events are a few bytes each.
        self._events.setsockopt(zmq.RCVHWM, 0)
        self._events.connect(address)
        self._dropped = False
        #: None while no handshake finished, True once one succeeded, else the failure's event.
        self._handshake: bool | int | None = None
        # The monitor is switched off before the socket closes, whoever closes it (`close`, or
        # the garbage collector through this finalizer, which keeps both sockets alive until
        # then): a socket closed with its monitor on wedged libzmq in this process after a few
        # hundred connections (no socket of any context could connect any more).
        self._close = weakref.finalize(self, _shutdown, socket, self._events)

    def arm(self) -> None:
        """A request is about to be sent: drops before this moment do not concern it.

        Asking the socket's EVENTS costs a third of a receive that fails with EAGAIN, and this
        runs before every request.
        """
        # ignore: EVENTS is an int option; pyzmq's stub types every option int | bytes
        if self._events.getsockopt(_EVENTS) & _POLLIN:  # type: ignore[operator]
            self.dropped()
        # A socket whose last handshake failed is as good as dropped: it may not reconnect.
        self._dropped = _failed(self._handshake)

    def dropped(self) -> bool:
        """True if the connection dropped since `arm()` (its request may be lost)."""
        events = self._events
        while True:
            try:
                frame = events.recv(_NOBLOCK)
            except zmq.Again:
                return self._dropped
            while events.getsockopt(_RCVMORE):
                events.recv(_NOBLOCK)
            self._note(frame)

    def _note(self, frame: bytes) -> None:
        # A monitor event (libzmq 4): the event number (u16) and its value (u32), then the
        # endpoint in a second frame.
        kind = struct.unpack("=hi", frame[:6])[0]
        if kind == _DISCONNECTED:
            self._dropped = True
        elif kind == _SUCCEEDED:
            self._handshake = True
        else:  # a failure, also after an earlier success (a reconnect to other keys)
            self._handshake = kind
            self._dropped = True  # the socket does not reconnect by itself (`curve`)

    def handshake(self) -> bool | int | None:
        """None while no handshake finished, True once one succeeded, else the event number of
        the failure (`zmq.EVENT_HANDSHAKE_FAILED_*`)."""
        self.dropped()
        return self._handshake

    def handshake_failure(self, wait: float) -> int | None:
        """The failed handshake's event number, waiting up to `wait` seconds for it: the caller
        knows the socket lost its peer, and the event may still be on its way."""
        deadline = time.monotonic() + wait
        while not _failed(self.handshake()) and time.monotonic() < deadline:
            self._events.poll(50)
        state = self._handshake
        return state if _failed(state) else None

    def close(self) -> None:
        """Switch the monitor off, then close the event socket and the watched socket."""
        self._close()


def _failed(state: bool | int | None) -> bool:
    return state is not None and state is not True


def _shutdown(socket: zmq.Socket, events: zmq.Socket) -> None:
    if not socket.closed:
        with contextlib.suppress(zmq.ZMQError):
            socket.disable_monitor()
        socket.close(linger=0)
    events.close(linger=0)


__all__ = ["HEARTBEAT_IVL_MS", "HEARTBEAT_TIMEOUT_MS", "Watch", "configure"]
