"""The parent process of `pyzdb-server`: restarts the serving worker when it dies or hangs.

Why a second process: some inputs can still take CPython's C code where no Python-level guard
runs -- a native recursion the sandbox did not foresee segfaults the process, and a single C
call (a hash-colliding `set()`, a comparison of two deeply shared lists) runs to completion
whatever the time budget says. Neither can be stopped from inside the process that runs it:
a SIGALRM handler or a watchdog thread needs the GIL the C call holds. So `pyzdb-server`
forks a *worker* that does all the serving, and stays behind as a small supervisor that

1. shares one page of memory with the worker (`InFlight`): before the worker evaluates a
   query or execute it writes there who sent it, by when it must be done (its time budget
   plus `grace`) and the request's frame as it arrived; it clears the page when the request
   ends. Two `struct.pack_into` calls and one copy of a (usually small) frame per request:
   nothing else crosses between the processes while all is well;
2. kills the worker (SIGKILL) once that deadline has passed, and notices a worker that died on
   its own (a signal, or any exit it did not ask for);
3. in both cases reads the page: the request in flight is *quarantined* -- logged with its
   session, request id and peer, and handed to the next worker, which answers a resend of it
   -- and the same text with the same parameters sent again under any id, by any client (an
   application's retry loop) -- with an error instead of running it again; then it forks a
   new worker at once, which
   recovers the data directory from its journal. A write is acknowledged only after its
   journal record is durable, so nothing acknowledged is lost; the killed request was never
   acknowledged, and its effects are not in the journal;
4. forwards SIGTERM/SIGINT to the worker and exits with its status, and SIGHUP (a reload
   request, for the worker to handle) without stopping.

The worker gets SIGKILL when the supervisor dies (`PR_SET_PDEATHSIG`), so a `kill -9` of the
`pyzdb-server` pid (what an operator or a test kills) takes both down, as before.

With `--front` (`pyzdb.server.front`) the supervisor also holds the public socket, and every
wait here (between looks at the page, while a new worker starts, the crash-loop pause) serves
the clients: relaying to the worker, or, while it is busy, answering pings and sending reads
to a read-only copy. The page then also carries when the request started and, written by the
worker's outbox, the newest seq a reply may have acknowledged. A worker forked from the front
closes the descriptors it inherited (libzmq's sockets), or a client's connection would outlive
the front's close of it.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import mmap
import os
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, overload

from pyzdb.errors import ProtocolError

if TYPE_CHECKING:
    from pyzdb.net.messages import Request
    from pyzdb.server.front import Front

log = logging.getLogger("pyzdb.supervisor")

#: Seconds between the supervisor's looks at the in-flight page.
POLL = 0.05
#: Restarts closer together than this count as a crash loop: the next one waits longer.
CRASH_LOOP = 5.0
#: Longest pause before a restart (a worker that dies at once, again and again).
MAX_BACKOFF = 2.0
#: Seconds a new worker waits for the previous process of the data directory to let go.
LOCK_WAIT = 1.0
_FIELD = 64  # bytes kept of the session, the peer identity and the op
#: Longest request frame kept on the page; a larger one is quarantined by (session, id) alone.
FRAME_MAX = 256 * 1024
#: Quarantined requests remembered; past it the oldest are forgotten.
QUARANTINE_MAX = 1000
#: The newest quarantined requests whose frames are kept (for the refusal by content): at
#: most 16 MiB however many kills came before.
FRAMES_KEPT = 64
#: The page: kill-at (monotonic seconds, 0.0 = idle), started at, request id, lengths of
#: session, peer and op, then the three (zero-padded): one `pack_into` per request.
_PAGE = struct.Struct(f"<ddQBBB{_FIELD}s{_FIELD}s{_FIELD}s")
_IDLE = struct.Struct("<d")  # clearing kill-at alone marks the page idle
#: After the page's fields: the newest seq a reply may have acknowledged (`--front` only,
#: written by the outbox before replies leave), then the frame's length and the frame.
_ACKED = struct.Struct("<Q")
_FRAME_LEN = struct.Struct("<I")
_ACKED_AT = _PAGE.size
_FRAME_LEN_AT = _ACKED_AT + _ACKED.size
_FRAME_AT = _FRAME_LEN_AT + _FRAME_LEN.size
_OP_NAMES = {"query": b"query", "execute": b"execute"}
_monotonic = time.monotonic
_PR_SET_PDEATHSIG = 1
#: Signals the supervisor passes on to the worker: the ones an operator sends `pyzdb-server`.
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class Quarantined:
    """A request that killed or hung a worker: it gets an error, never a second run."""

    session: bytes
    request_id: int
    peer: bytes
    op: str
    reason: str
    #: The request's frame as the worker received it (b"": too large to keep): the next
    #: worker refuses the same text and parameters under any id (`SessionMemory.learn`).
    frame: bytes = field(default=b"", repr=False)

    def request(self, max_message: int) -> Request | None:
        """The request its kept frame holds, decoded with the bounds of any request; None if
        no frame was kept (too large) or it does not decode. Called by the worker and the
        front, never by the supervisor's watch."""
        from pyzdb.net.messages import decode_request

        try:
            return decode_request(self.frame, max_message)
        except ProtocolError:
            return None

    def message(self) -> str:
        return (
            f"request {self.request_id} ({self.op}) of this session {self.reason}; the "
            "server restarted without it and will not run it again (quarantined)"
        )


class InFlight:
    """The shared page between worker and supervisor (see the module docstring, step 1)."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        # anonymous and shared: inherited across fork; the kernel backs only the pages written
        self._page = mmap.mmap(-1, _FRAME_AT + FRAME_MAX)

    def enter(
        self,
        session: bytes,
        request_id: int,
        peer: bytes,
        op: str,
        seconds: float,
        frame: bytes = b"",
    ) -> None:
        """The worker, before it evaluates: this request must end within `seconds` + grace."""
        name = _OP_NAMES.get(op) or op.encode()[:_FIELD]
        session, peer = session[:_FIELD], peer[:_FIELD]
        size = len(frame)
        if size > FRAME_MAX:
            size = 0
        else:
            self._page[_FRAME_AT : _FRAME_AT + size] = frame
        _FRAME_LEN.pack_into(self._page, _FRAME_LEN_AT, size)
        now = _monotonic()
        _PAGE.pack_into(
            self._page,
            0,
            now + seconds + self.grace,
            now,
            request_id & 0xFFFFFFFFFFFFFFFF,
            len(session),
            len(peer),
            len(name),
            session,
            peer,
            name,
        )

    def leave(self) -> None:
        """The worker, once the request is answered (or failed on its own terms)."""
        _IDLE.pack_into(self._page, 0, 0.0)

    def acknowledged(self, seq: int) -> None:
        """The worker's outbox, before replies that may reflect writes up to `seq` leave
        (`--front`: a read the front sends elsewhere must see them)."""
        _ACKED.pack_into(self._page, _ACKED_AT, seq)

    def look(self) -> tuple[float, bytes, int]:
        """The front, each tick: (since when the request in flight runs, 0.0 = idle; its
        session; the newest seq a reply may have acknowledged), without copying the frame."""
        kill_at, started, _, ns, _, _, session, _, _ = _PAGE.unpack_from(self._page)
        (acked,) = _ACKED.unpack_from(self._page, _ACKED_AT)
        return (started if kill_at else 0.0), session[:ns], acked

    def read(self) -> tuple[float, Quarantined | None]:
        """The supervisor: (kill-at, the request in flight) or (0.0, None) when idle."""
        kill_at, _, request_id, ns, npeer, nop, session, peer, op = _PAGE.unpack_from(self._page)
        if not kill_at:
            return 0.0, None
        (size,) = _FRAME_LEN.unpack_from(self._page, _FRAME_LEN_AT)
        frame = self._page[_FRAME_AT : _FRAME_AT + min(size, FRAME_MAX)]
        name = op[:nop].decode("ascii", "replace")
        return kill_at, Quarantined(session[:ns], request_id, peer[:npeer], name, "", frame)


#: What the worker runs: (the page, the quarantine so far, call when serving) -> exit status.
Serve = Callable[[InFlight, "dict[tuple[bytes, int], Quarantined]", Callable[[], None]], int]


class Supervisor:
    """Forks workers, watches them, restarts them; `run()` returns the exit status."""

    def __init__(
        self, serve: Serve, data: str, grace: float = 1.0, front: Front | None = None
    ) -> None:
        self.serve = serve
        self.data = data
        self.inflight = InFlight(grace)
        self.quarantine: dict[tuple[bytes, int], Quarantined] = {}
        #: `--front` (`pyzdb.server.front`): every wait of this process serves clients.
        self.front = front
        if front is not None:
            front.watch(self.inflight, self.quarantine)
        self.worker = 0
        self.restarts = 0
        self._stopping = False
        self._recent: list[float] = []

    def run(self) -> int:
        previous = {signum: signal.signal(signum, self._forward) for signum in _FORWARDED}
        try:
            status, ready = self._start()
            if not ready:
                return status  # it could not start (bad arguments, locked, corrupt): say so
            while True:
                status = self._watch()
                if self._stopping or status == 0:
                    return status
                self._after_death(status)
                status, ready = self._start()
                if not ready:
                    return status
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self.front is not None:
                self.front.close()

    def _pause(self, seconds: float) -> None:
        """Wait: behind `--front`, serving the clients meanwhile."""
        if self.front is None:
            time.sleep(seconds)
        else:
            self.front.serve(seconds)

    # -- one worker's life ---------------------------------------------------------------------

    def _start(self) -> tuple[int, bool]:
        """Fork a worker and wait until it serves; (status, False) if it exited before."""
        _wait_for_directory(self.data, self._pause)
        read_fd, write_fd = os.pipe()
        if self.front is not None:
            self.front.before_fork()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: measured through the server tests
            os.close(read_fd)
            if self.front is not None:
                self.front.forget_in_child(write_fd)
            die_with_parent()
            status = 1
            try:
                for signum in _FORWARDED:
                    signal.signal(signum, signal.SIG_DFL)

                def ready() -> None:
                    os.write(write_fd, b"r")
                    os.close(write_fd)

                status = self.serve(self.inflight, self.quarantine, ready)
            except BaseException:  # the child must never return into our caller
                log.exception("the worker failed")
            finally:
                logging.shutdown()
                os._exit(status)
        os.close(write_fd)
        self.worker = pid
        try:
            serving = self._read_ready(read_fd, pid)
        finally:
            os.close(read_fd)
        if not serving:
            return self._reap(block=True), False
        log.info("worker pid %d serves", pid)
        if self.front is not None:
            self.front.worker_ready()
        return 0, True

    def _read_ready(self, fd: int, pid: int) -> bool:
        if self.front is not None:
            while not self.front.serve(POLL, fd):
                pass
        while True:
            try:
                return os.read(fd, 1) == b"r"
            except InterruptedError:
                continue

    def _watch(self) -> int:
        """Until the worker exits: kill it when the request in flight is past its deadline."""
        while True:
            status = self._reap(block=False)
            if status is not None:
                return status
            kill_at, _ = self.inflight.read()
            if kill_at and time.monotonic() > kill_at:
                log.error(
                    "worker pid %d is stuck in a request past its budget: killing it", self.worker
                )
                self._kill("ran past its time budget and was stopped by a restart")
            self._pause(POLL)

    def _kill(self, reason: str) -> None:
        _, request = self.inflight.read()
        if request is not None:
            self._quarantine(request, reason)
        try:
            os.kill(self.worker, signal.SIGKILL)
        except ProcessLookupError:
            pass

    @overload
    def _reap(self, block: Literal[True]) -> int: ...
    @overload
    def _reap(self, block: bool) -> int | None: ...
    def _reap(self, block: bool) -> int | None:
        """The worker's exit status once it ended (waited for if `block`), else None."""
        while True:
            try:
                pid, status = os.waitpid(self.worker, 0 if block else os.WNOHANG)
            except InterruptedError:
                continue
            except ChildProcessError:
                return 1
            if pid == 0:
                return None
            return os.waitstatus_to_exitcode(status)

    def _after_death(self, status: int) -> None:
        """Log, quarantine the request in flight, and pause if the worker keeps dying."""
        how = f"killed by signal {-status}" if status < 0 else f"exited with status {status}"
        _, request = self.inflight.read()
        if request is not None:
            self._quarantine(request, f"stopped the server ({how})")
        self.inflight.leave()
        log.error("worker pid %d %s; restarting it", self.worker, how)
        if self.front is not None:
            self.front.worker_died()
        now = time.monotonic()
        self._recent = [t for t in self._recent if now - t < CRASH_LOOP] + [now]
        self.restarts += 1
        if len(self._recent) > 2:
            self._pause(min(MAX_BACKOFF, 0.25 * 2 ** (len(self._recent) - 3)))

    def _quarantine(self, request: Quarantined, reason: str) -> None:
        key = (request.session, request.request_id)
        if key in self.quarantine:
            return
        entry = Quarantined(
            request.session, request.request_id, request.peer, request.op, reason, request.frame
        )
        self.quarantine[key] = entry
        while len(self.quarantine) > QUARANTINE_MAX:
            del self.quarantine[next(iter(self.quarantine))]
        if len(self.quarantine) > FRAMES_KEPT:
            older = list(self.quarantine)[-FRAMES_KEPT - 1]
            self.quarantine[older] = replace(self.quarantine[older], frame=b"")
        log.error(
            "quarantined request %d (%s) of session %s from peer %s: it %s",
            entry.request_id,
            entry.op,
            entry.session.hex() or "-",
            entry.peer.hex(),
            reason,
        )

    def _forward(self, signum: int, frame: object) -> None:
        if signum != signal.SIGHUP:  # SIGHUP (reload) is the worker's business alone
            self._stopping = True
        if self.worker:
            try:
                os.kill(self.worker, signum)
            except ProcessLookupError:
                pass


def die_with_parent(parent: int | None = None) -> None:
    """Linux: the worker gets SIGKILL when the supervisor dies, so none outlives a kill -9
    (and the front's shadow when the front dies: `parent`, its pid, checked after exec)."""
    if parent is None:
        parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        log.warning("this platform cannot tie the worker's life to the supervisor's")
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _wait_for_directory(data: str, pause: Callable[[float], None] = time.sleep) -> None:
    """Wait (a little) until no process holds the data directory's flock.

    A worker killed a moment ago lets go of it only once the kernel has torn it down; the
    new worker would otherwise refuse to start with "in use by another process".
    """
    path = os.path.join(data, "LOCK")
    if not os.path.exists(path):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return  # the worker will say who holds it
                pause(0.01)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
    finally:
        os.close(fd)


__all__ = ["Supervisor", "InFlight", "Quarantined", "die_with_parent"]
