"""`pyzdb-server --front`: the supervisor answers pings and reads while the worker is stuck.

Why: one worker evaluates every request, so a request that runs long -- a Python loop up to its
time budget, or a C call that only the supervisor's kill ends -- holds every other client's
ping and read behind it. Nothing inside the worker can answer meanwhile (a C call holds its
GIL), so the answer comes from another process: the supervisor, which never evaluates. That
costs a hop on every request, so it is opt-in.

Theory of operation
-------------------
The supervisor binds the public endpoint (a ROUTER); the worker binds an ipc endpoint in a
private directory (mode 0700, removed at exit) and sees one routing frame more, the front's
(`ServerConfig.behind_front`). The front works in one of two modes:

- *relay*, while all is well: libzmq's proxy (`zmq.proxy_steerable`) forwards the frames both
  ways untouched, in a thread and without the GIL, so the hop costs two passes through libzmq
  and no Python.
- *inspect*, while the worker is busy: the page (`supervisor.InFlight`) shows a request running
  for longer than `--busy-after`, or the worker is dead or restarting. The proxy is stopped and
  this thread decodes each request (`pyzdb.net.messages.decode_request`: bounded, fuzzed). It
  answers `ping` itself (the worker's reply), sends a `query` to the shadow
  (`pyzdb.server.shadow`) with `min_seq` raised to the newest seq a reply acknowledged (the
  page's, written by the worker's outbox before replies leave), and forwards everything else to
  the worker, where it waits behind the stuck request as it would without the front. A read
  goes to the worker too when it belongs to a transaction (`txn`: it must see its own writes),
  to the session whose request is stuck (the lock holder's, if the lock is held), or is
  quarantined (the worker refuses it), or when the shadow is not connected.

When the worker dies, the requests it had received die with it, and a client notices a lost
request only by its connection dropping (`pyzdb.net.liveness`), which the front's connections
would not. So the front closes its public socket and binds a new one: every client sees the
drop and resends, and the new worker's reply cache and quarantine keep each request
at-most-once. The same when the shadow's worker dies with reads in flight.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections import deque
from typing import Any

import zmq
from zmq import zmq_poll

from pyzdb.errors import Error, ProtocolError
from pyzdb.net.messages import Reply, Request, decode_request, pack
from pyzdb.server.options import ServerConfig
from pyzdb.server.relay import Link, Relay
from pyzdb.server.router import POLLIN, Router, split_envelope
from pyzdb.server.shadow import Shadow

log = logging.getLogger("pyzdb.front")

#: Messages moved per socket and wake-up in inspect mode.
BATCH = 64
#: Longest wait between two looks at the page.
TICK = 0.05
#: Seconds the front waits for the old public socket to let go of its address.
REBIND_WAIT = 2.0
_POLLOUT = int(zmq.POLLOUT)
_NOBLOCK = int(zmq.NOBLOCK)
_IPC_MAX = 100  # bytes of an ipc path (the kernel's sun_path is 108)


class Front:
    """The public socket and the two links behind it; see the module docstring."""

    def __init__(self, config: ServerConfig, grace: float, verbose: bool) -> None:
        self.busy_after = config.busy_after
        self.max_message = config.max_message
        self.private = _private_directory()
        self.context = zmq.Context()
        self.public = Router(self.context)
        try:
            self.endpoint = self.public.bind(config.bind, config.max_message)
        except zmq.ZMQError as exc:
            self.public.close()
            self.context.term()
            shutil.rmtree(self.private, ignore_errors=True)
            raise Error(f"cannot bind {config.bind}: {exc}") from None
        self.worker_uri = f"ipc://{self.private}/worker.sock"
        self.worker = Link(self.context, self.worker_uri)
        self.shadow = Shadow(
            config, self.worker_uri, f"ipc://{self.private}/shadow.sock", grace, verbose
        )
        self.to_shadow = Link(self.context, self.shadow.uri)
        self.relay = Relay(self.context)
        self._page: Any = None
        self._quarantine: dict[tuple[bytes, int], Any] = {}
        self._killers: set[str] = set()  # texts of the quarantined requests whose frame is kept
        self._ready = self._served = self._busy = False
        self._busy_since = 0.0
        self._acked = 0
        self._stuck = b""  # the session of the request in flight
        self._shadow_pending = 0  # reads sent to the shadow and not answered (about)
        self._backlog: deque[list[bytes]] = deque()  # for a worker socket at its high-water
        self.answered = 0  # pings and reads answered for the worker while it was busy

    # -- the supervisor's hooks ----------------------------------------------------------------

    def watch(self, page: Any, quarantine: dict[tuple[bytes, int], Any]) -> None:
        """The supervisor's page and quarantine, read at each tick."""
        self._page = page
        self._quarantine = quarantine

    def worker_config(self, config: ServerConfig) -> ServerConfig:
        """The worker's config: the private endpoint, behind this front."""
        return dataclasses.replace(
            config, bind=self.worker_uri, public=self.endpoint, behind_front=True
        )

    def before_fork(self) -> None:
        self.relay.stop()  # no thread of ours is inside libzmq when the child is made

    def forget_in_child(self, keep: int) -> None:
        """In the new worker: close every descriptor inherited from the front but `keep`.

        The front's sockets are libzmq's, whose threads the child does not have; a listening
        socket or a client's connection left open in the worker would outlive the front's
        close of it (the client would never see its connection drop)."""
        os.closerange(3, keep)
        os.closerange(keep + 1, _max_fd())

    def worker_ready(self) -> None:
        """The worker serves: relay again; the first time, start the shadow."""
        self._ready = True
        if not self._served:  # clients are read from now on (a failed start answers none)
            self._served = True
            self.shadow.start()

    def worker_died(self) -> None:
        """The worker is gone with the requests it had: every client must resend."""
        self._ready = False
        self.relay.stop()
        self._learn_killers()  # the supervisor has just quarantined the request in flight
        self.worker.wait_down(1.0)
        self._kick("the worker stopped")

    def serve(self, seconds: float, wake: int = -1) -> bool:
        """Serve the clients for `seconds`; True as soon as the descriptor `wake` is readable."""
        deadline = time.monotonic() + seconds
        while True:
            self._tick()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            items: list[tuple[Any, int]] = [
                (self.to_shadow.socket, POLLIN),
                (self.to_shadow.events, POLLIN),
                (self.worker.events, POLLIN),
            ]
            if not self.relay.running:
                items.append((self.worker.socket, POLLIN | (_POLLOUT if self._backlog else 0)))
                if self._served and not self._backlog:
                    items.append((self.public.socket, POLLIN))
            if wake >= 0:
                items.append((wake, POLLIN))
            ready = dict(zmq_poll(items, int(min(left, TICK) * 1000) + 1))
            if wake >= 0 and wake in ready:
                return True
            self._handle(ready)

    def close(self) -> None:
        """Pass on the worker's last replies, stop the shadow, close, remove the directory."""
        self.relay.close()
        while self.worker.socket.poll(100):
            self._forward(self.worker.socket)
        self.shadow.stop()
        self.worker.close()
        self.to_shadow.close()
        self.public.close()
        self.context.term()
        shutil.rmtree(self.private, ignore_errors=True)

    # -- the two modes -------------------------------------------------------------------------

    def _tick(self) -> None:
        """Read the page: is the worker busy? Relay while it is not."""
        started, session, self._acked = self._page.look()
        now = time.monotonic()
        busy = not self._ready or (started > 0.0 and now - started >= self.busy_after)
        if busy != self._busy:
            self._busy = busy
            if busy:
                self._busy_since, self.answered = now, 0
            elif self.answered:
                log.info(
                    "the worker was busy for %.1f s: the front answered %d pings and reads",
                    now - self._busy_since,
                    self.answered,
                )
        self._stuck = session if started else b""
        self.shadow.check()
        if self._ready and not busy and not self._backlog:
            self.relay.start(self.public.socket, self.worker.socket)
        else:
            self.relay.stop()

    def _handle(self, ready: dict[Any, int]) -> None:
        if self.to_shadow.socket in ready:
            self.relay.stop()  # a late reply of the shadow: the public socket is ours again
            answered = self._forward(self.to_shadow.socket)
            self._shadow_pending = max(0, self._shadow_pending - answered)
        if self.worker.events in ready:
            self.worker.note()
        if self.to_shadow.events in ready and self.to_shadow.note() and self._shadow_pending:
            self._shadow_pending = 0
            self._kick("the shadow stopped with reads in flight")
        if self.relay.running:
            return
        if self.worker.socket in ready:
            if ready[self.worker.socket] & _POLLOUT:
                self._flush_backlog()
            self._forward(self.worker.socket)
        if self.public.socket in ready:
            for frames in self.public.drain(BATCH, ready=True):
                self._route(frames)

    def _route(self, frames: list[bytes]) -> None:
        """One client's message in inspect mode: answered here, by the shadow, or the worker."""
        if self._busy:
            envelope, rest = split_envelope(frames)
            request = None
            if len(rest) == 1:
                with contextlib.suppress(ProtocolError):
                    request = decode_request(rest[0], self.max_message)
            if request is not None:
                if request.op == "ping":
                    self.public.send(envelope, pack(Reply(request.id, True, None, self._acked)))
                    self.answered += 1
                    return
                if request.op == "query" and self._shadow_may_read(request):
                    if self._to_shadow(envelope, request):
                        return
        self._to_worker(frames)

    def _shadow_may_read(self, request: Request) -> bool:
        """Not a read of a transaction, of the stuck session, nor a quarantined one."""
        stuck = self._stuck  # the page keeps a session's first 64 bytes
        return (
            self.to_shadow.up
            and not request.txn
            and not (stuck and request.session[: len(stuck)] == stuck)
            and (request.session, request.id) not in self._quarantine
            and request.source not in self._killers
        )

    def _to_shadow(self, envelope: list[bytes], request: Request) -> bool:
        read = dataclasses.replace(request, min_seq=max(request.min_seq, self._acked))
        try:
            self.to_shadow.socket.send_multipart([*envelope, pack(read)], _NOBLOCK)
        except zmq.Again:
            return False
        self._shadow_pending += 1
        self.answered += 1
        return True

    def _to_worker(self, frames: list[bytes]) -> None:
        if not self._backlog:
            try:
                self.worker.socket.send_multipart(frames, _NOBLOCK)
                return
            except zmq.Again:
                pass  # at its high-water mark: hold it, and read no more clients meanwhile
        self._backlog.append(frames)

    def _flush_backlog(self) -> None:
        backlog = self._backlog
        while backlog:
            try:
                self.worker.socket.send_multipart(backlog[0], _NOBLOCK)
            except zmq.Again:
                return
            backlog.popleft()

    def _forward(self, source: zmq.Socket[bytes]) -> int:
        """Replies waiting on `source` to their clients (a client gone loses its reply)."""
        public = self.public.socket
        count = 0
        while count < BATCH:
            try:
                frames = source.recv_multipart(_NOBLOCK, copy=False)
            except zmq.Again:
                break
            count += 1
            with contextlib.suppress(zmq.ZMQError):
                public.send_multipart(frames, _NOBLOCK, copy=False)
        return count

    def _learn_killers(self) -> None:
        """The texts of the quarantined requests (the worker refuses them; the shadow, which
        does not know them, would run them), from the frames the supervisor keeps."""
        requests = (entry.request(self.max_message) for entry in self._quarantine.values())
        self._killers = {request.source for request in requests if request is not None}

    def _kick(self, why: str) -> None:
        """Close the public socket and bind a new one: each client sees its connection drop
        and resends what it has in flight."""
        self.relay.stop()
        log.warning("%s: reconnecting every client so that each resends", why)
        self.public.socket.close(linger=0)
        self.public = _rebind(self.context, self.endpoint, self.max_message)


def _rebind(context: zmq.Context, endpoint: str, max_message: int) -> Router:
    """A new public socket on the address of the one just closed.

    libzmq 4.3 leaves a closed ipc listener's file (it removes only the temporary ones of a
    wildcard bind): the new bind replaces it. A tcp port is free once the closed socket's
    listener is torn down, in libzmq's own time: hence the retries."""
    deadline = time.monotonic() + REBIND_WAIT
    while True:
        public = Router(context)
        try:
            public.bind(endpoint, max_message)
            return public
        except zmq.ZMQError as exc:
            public.close()
            if time.monotonic() > deadline:
                raise Error(f"cannot bind {endpoint} again: {exc}") from None
            time.sleep(0.01)


def _private_directory() -> str:
    """A new directory only this user can enter (mkdtemp's 0700), short enough for ipc."""
    directory = tempfile.mkdtemp(prefix="pyzdb-front-")
    if len(directory) + len("/worker.sock") > _IPC_MAX:
        os.rmdir(directory)
        directory = tempfile.mkdtemp(prefix="pyzdb-front-", dir="/tmp")
    return directory


def _max_fd() -> int:
    try:
        return max(256, os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 65536


__all__ = ["Front"]
