"""The server's ROUTER socket: bound once, drained in batches, replies sent without blocking.

A ROUTER prefixes every message with the sender's identity; REQ sockets and proxies add more
routing frames and an empty delimiter (the *envelope*), which each reply must echo back.
Frames a client sends are never unpickled: the body goes to `pyzdb.net.messages` alone.
"""

from __future__ import annotations

import logging

import zmq

from pyzdb.server.auth import ServerAuth

log = logging.getLogger("pyzdb.server")

#: Frames of a routing envelope we echo back: the ROUTER's identity plus a few proxies.
MAX_ENVELOPE = 8
#: The routing identity of `pyzdb-server --front` towards its worker and shadow: the frame
#: before the client's identity in what they receive. libzmq's own identities start with a
#: zero byte, so no other peer has it by accident.
FRONT_ID = b"pyzdb-front"
#: pyzmq's flags as plain ints: its enum flags cost an `enum` call per use on the hot path.
POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)
_RCVMORE = int(zmq.RCVMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK


class Router:
    """One ROUTER socket of `context`; with `auth`, a CURVE server checked by ZAP."""

    def __init__(self, context: zmq.Context, auth: ServerAuth | None = None, hops: int = 0) -> None:
        self.socket = context.socket(zmq.ROUTER)
        self._auth = auth
        #: Most frames kept of one message (more is refused anyway): the envelope, the body and
        #: one more to tell it was too long; `hops`: routing frames before the client's
        #: identity (1 behind `--front`).
        self._keep = MAX_ENVELOPE + 3 + hops
        if auth is not None:
            auth.configure(self.socket)

    def behind_front(self) -> None:
        """The front's identity may come back (a reconnect) before the old pipe is gone."""
        self.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)

    def bind(self, uri: str, max_message: int) -> str:
        """Bind `uri` and return the endpoint bound (a port 0 resolved); ZMQError if taken.

        Frames over `max_message` are dropped by libzmq (MAXMSGSIZE) with their connection,
        before Python sees them.
        """
        self.socket.setsockopt(zmq.MAXMSGSIZE, max_message)
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.bind(uri)
        return self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def drain(self, limit: int, ready: bool = False) -> list[list[bytes]]:
        """The messages ready now, up to `limit` (asking EVENTS is cheaper than the exception
        a receive on an empty socket raises; `ready`: the poll just said a message is there).
        A ROUTER prefixes every message with the sender's identity, so each has at least two
        frames."""
        if self._auth is not None:
            return self._auth.drain(self.socket, ready, limit)
        batch: list[list[bytes]] = []
        sock, keep = self.socket, self._keep
        recv, getsockopt = sock.recv, sock.getsockopt
        while len(batch) < limit and (ready or getsockopt(_EVENTS) & POLLIN):
            ready = False
            try:
                identity = recv(_NOBLOCK)
            except zmq.Again:  # the poll's word went stale (it never does with one reader)
                break
            frames = [identity, recv(_NOBLOCK)]
            while getsockopt(_RCVMORE):
                frame = recv(_NOBLOCK)
                if len(frames) < keep:  # more is refused anyway: keep no more
                    frames.append(frame)
            batch.append(frames)
        return batch

    def send(self, envelope: list[bytes], data: bytes) -> None:
        """Send one reply; a peer that stopped reading (its queue is full) loses it."""
        sock = self.socket
        try:
            for frame in envelope:
                sock.send(frame, _SNDMORE_NOBLOCK)
            sock.send(data, _NOBLOCK)
        except zmq.ZMQError as exc:  # the peer's queue is full: it stopped reading
            log.debug("reply dropped: %s", exc)

    def close(self) -> None:
        self.socket.close()


def peer_of(envelope: list[bytes]) -> bytes:
    """The client's identity in a routing envelope: behind the front, the frame after its.

    >>> peer_of([b"peer", b""]), peer_of([FRONT_ID, b"peer"])
    (b'peer', b'peer')
    """
    if envelope[0] == FRONT_ID and len(envelope) > 1:
        return envelope[1]
    return envelope[0]


def split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Routing envelope (identity ... empty delimiter) and body. REQ and our DEALER clients
    send the delimiter; without one, the envelope is the identity alone.

    >>> split_envelope([b"peer", b"", b"body"])
    ([b'peer', b''], [b'body'])
    >>> split_envelope([b"peer", b"body"])
    ([b'peer'], [b'body'])
    """
    for index in range(1, min(len(frames), MAX_ENVELOPE + 1)):
        if not frames[index]:
            return frames[: index + 1], frames[index + 1 :]
    return frames[:1], frames[1:]


__all__ = ["FRONT_ID", "MAX_ENVELOPE", "POLLIN", "Router", "peer_of", "split_envelope"]
