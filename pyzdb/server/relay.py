"""The front's two tools (`pyzdb.server.front`): links to the processes behind it, and the relay.

`Link` is a DEALER towards the worker or the shadow, with the front's routing identity (so
the worker tells the front's messages from its other peers') and a socket monitor that says
whether the peer is connected: a shadow that is down gets no reads, and before telling the
clients to resend after a worker's death the front waits until its link saw the connection
drop, so that nothing it forwards afterwards goes down the dead connection.

`Relay` is libzmq's proxy (`zmq.proxy_steerable`) between the public socket and the worker's
link, in a thread, while the worker is not busy: frames cross both ways untouched and without
the GIL. The front stops it (TERMINATE on an inproc pair) before it touches either socket
itself; a socket passes between threads only across that stop and the next start.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

import zmq
import zmq.utils.monitor

from pyzdb.server.router import FRONT_ID

log = logging.getLogger("pyzdb.front")

_NOBLOCK = int(zmq.NOBLOCK)
_CONNECTED = int(zmq.EVENT_HANDSHAKE_SUCCEEDED)
_DISCONNECTED = int(zmq.EVENT_DISCONNECTED)
#: Milliseconds between reconnection attempts to a peer that restarts (libzmq's default: 100).
RECONNECT_MS = 10


class Link:
    """A DEALER towards the worker or the shadow, and whether its peer is connected."""

    def __init__(self, context: zmq.Context, uri: str) -> None:
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.ROUTING_ID, FRONT_ID)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        #: Readable when the peer came or went (`note`).
        self.events = self.socket.get_monitor_socket(_CONNECTED | _DISCONNECTED)
        self.socket.connect(uri)
        self.up = False

    def note(self) -> bool:
        """Read the monitor's events; True if the peer went away meanwhile."""
        dropped = False
        while True:
            try:
                event = zmq.utils.monitor.recv_monitor_message(self.events, _NOBLOCK)["event"]
            except zmq.Again:
                return dropped
            self.up = event == _CONNECTED
            dropped = dropped or not self.up

    def wait_down(self, seconds: float) -> None:
        """Wait (at most `seconds`) until the link saw its connection drop."""
        self.note()
        while self.up and self.events.poll(int(seconds * 1000)):
            self.note()

    def close(self) -> None:
        """Monitor off first: a socket closed with its monitor on can wedge libzmq."""
        with contextlib.suppress(zmq.ZMQError):
            self.socket.disable_monitor()
        self.events.close(linger=0)
        self.socket.close(linger=0)


class Relay:
    """libzmq's proxy between two sockets, in a thread, until `stop()`."""

    def __init__(self, context: zmq.Context) -> None:
        address = f"inproc://pyzdb-front-relay-{id(self)}"
        self._control = context.socket(zmq.PAIR)
        self._control.bind(address)
        self._steer = context.socket(zmq.PAIR)
        self._steer.connect(address)
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Started and not stopped (a proxy that failed is logged and counts as stopped)."""
        if self._thread is not None and not self._thread.is_alive():
            self._thread = None
        return self._thread is not None

    def start(self, public: zmq.Socket[bytes], worker: zmq.Socket[bytes]) -> None:
        if self._thread is not None:
            return
        for socket in (self._control, self._steer):  # nothing left over from the last run
            with contextlib.suppress(zmq.Again):
                while True:
                    socket.recv(_NOBLOCK)
        self._thread = threading.Thread(
            target=_proxy, args=(public, worker, self._control), name="pyzdb-front-relay"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop the proxy and wait for its thread: the sockets are the caller's again."""
        if self._thread is None:
            return
        self._steer.send(b"TERMINATE")
        self._thread.join()
        self._thread = None

    def close(self) -> None:
        self.stop()
        self._control.close(linger=0)
        self._steer.close(linger=0)


def _proxy(
    public: zmq.Socket[bytes], worker: zmq.Socket[bytes], control: zmq.Socket[bytes]
) -> None:
    # Process-directed signals go to the main thread, whose handlers forward them.
    signal.pthread_sigmask(
        signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD}
    )
    try:
        zmq.proxy_steerable(public, worker, None, control)
    except zmq.ZMQError as exc:
        log.error("the relay stopped (%s): the front forwards in Python", exc)


__all__ = ["Link", "Relay"]
