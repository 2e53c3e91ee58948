"""A replica's fetch thread: asks the primary for records or a snapshot, and hands them over.

The thread (`Fetcher`) talks to the primary over its own DEALER socket. It asks for a snapshot
when the replica is new or was told to start over, and otherwise for the records after the
seq the replica has applied (``replicate``, see `pyzdb.server.feed`). It also copies every blob
a record or snapshot refers to before handing either over. Then it queues the batch and wakes
the main loop through a pipe (`Handoff`), and waits until the batch is applied before it asks
again: a pull is the acknowledgement of what was applied, and the only credit the primary gets,
so nothing is dropped and a slow replica only slows itself. Applying is the main loop's
(`pyzdb.server.replica.Follower`), because the engine belongs to the server's main thread.

A key the primary refuses (an unknown key, a handshake failure, or a role below admin) does not
stop the thread: it logs one clear error, reports ``state: refused``, and asks again every
`REFUSED_PAUSE` seconds (the primary's access list may be fixed meanwhile: it is reloaded).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import logging
import queue
import threading
import time
from typing import Any

import zmq

from pyzdb.codec import MAX_REPLY_SIZE, decode_value
from pyzdb.engine import Engine
from pyzdb.errors import AuthenticationError, Error, SecurityError
from pyzdb.net import curve
from pyzdb.net.errorinfo import info_to_exception
from pyzdb.net.messages import Request, decode_reply, pack
from pyzdb.server.wakeup import WakePipe

log = logging.getLogger("pyzdb.replica")

#: Seconds the fetch thread waits for one answer of the primary before it calls the replica
#: disconnected and tries again on a fresh socket.
PRIMARY_TIMEOUT = 5.0
#: Pause before asking a primary that did not answer again.
RETRY_PAUSE = 0.5
#: Pause before asking again a primary that refused this replica's key (or its lack of one).
REFUSED_PAUSE = 5.0
#: The handshake events the fetch socket's monitor reports.
_HANDSHAKE_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
_FILE_TAG = "pyzdb.File"


@dataclasses.dataclass
class Stream:
    """What the fetch thread and the main loop both know of the stream from the primary."""

    primary: str
    #: This replica's name on the primary (its `info` lists replicas by it).
    name: str
    #: The primary's history id followed (the main loop sets it when a snapshot is installed).
    history: str | None
    #: Checksum of the last record applied (main loop), sent so the primary can tell a fork.
    last_crc: int | None
    #: Start over from a snapshot: the primary said so (fetch thread) or a batch failed (main).
    resync: bool = False
    #: disconnected / syncing / streaming / refused, and the primary's last seq (fetch thread).
    state: str = "disconnected"
    primary_seq: int = 0
    caught_up_at: float = dataclasses.field(default_factory=time.time)


class Handoff:
    """Batches from the fetch thread to the main loop; the fetch thread waits for each."""

    def __init__(self) -> None:
        self.pipe = WakePipe()
        self._batches: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._applied = threading.Condition()
        self._handed = 0  # batches queued (fetch thread) / applied (main thread)
        self._done = 0

    def give(self, batch: tuple[Any, ...], stop: threading.Event) -> None:
        """Queue a batch for the main loop and wait until it is applied (the credit)."""
        self._handed += 1
        self._batches.put(batch)
        self.pipe.notify()
        with self._applied:
            while self._done < self._handed and not stop.is_set():
                self._applied.wait(0.5)

    def take(self) -> tuple[Any, ...] | None:
        """The next batch to apply (main loop), or None."""
        try:
            return self._batches.get_nowait()
        except queue.Empty:
            return None

    def applied(self) -> None:
        """The batch taken last is applied, or given up: the fetch thread may ask again."""
        with self._applied:
            self._done += 1
            self._applied.notify_all()

    def release(self) -> None:
        """Wake a fetch thread that waits in `give` (it is stopping)."""
        with self._applied:
            self._applied.notify_all()


class Fetcher:
    """The fetch thread of one replica (see the module docstring)."""

    def __init__(self, engine: Engine, stream: Stream, handoff: Handoff, credential: Any) -> None:
        self._engine = engine
        self._stream = stream
        self._handoff = handoff
        #: The credential the fetch socket presents (`--key`, else `$PYZDB_KEY`), or None.
        self._credential = credential
        self._refused: str | None = None
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._context: zmq.Context | None = None
        self._thread = threading.Thread(target=self._run, name="pyzdb-replica", daemon=True)

    def start(self, context: zmq.Context) -> None:
        self._context = context
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._handoff.release()
        if self._thread.is_alive():
            self._thread.join(PRIMARY_TIMEOUT + 1)

    def _run(self) -> None:
        stream = self._stream
        assert self._context is not None
        socket = monitor = None
        try:
            while not self._stop.is_set():
                if socket is None:
                    socket = self._context.socket(zmq.DEALER)
                    socket.setsockopt(zmq.LINGER, 0)
                    curve.configure(socket, self._credential)
                    monitor = socket.get_monitor_socket(_HANDSHAKE_EVENTS)
                    socket.connect(stream.primary)
                try:
                    if stream.resync or stream.history is None:
                        stream.state = "syncing"
                        self._fetch_snapshot(socket)
                    else:
                        self._fetch_records(socket)
                    self._refused = None
                except _NoAnswer:
                    refused = _handshake_refusal(monitor, self._credential, stream.primary)
                    _close(socket, monitor)
                    socket = monitor = None
                    if refused is not None:
                        self._refuse(refused)
                    else:
                        stream.state = "disconnected"
                        self._stop.wait(RETRY_PAUSE)
                except (SecurityError, AuthenticationError) as exc:
                    self._refuse(exc)
                except Exception:
                    log.exception("replication from %s failed; trying again", stream.primary)
                    self._stop.wait(RETRY_PAUSE)
        finally:
            if socket is not None:
                _close(socket, monitor)

    def _refuse(self, exc: Exception) -> None:
        """The primary refused this replica's key: say so once, keep serving, ask again later."""
        self._stream.state = "refused"
        message = str(exc)
        if message != self._refused:
            log.error(
                "the primary %s refused this replica: %s (a replica of a primary with "
                "--keys needs --key FILE with a key of the admin role); still serving "
                "seq %d read-only, asking again every %g s",
                self._stream.primary,
                message,
                self._engine.last_seq,
                REFUSED_PAUSE,
            )
            self._refused = message
        self._stop.wait(REFUSED_PAUSE)

    def _ask(self, socket: zmq.Socket, op: str, params: dict[str, Any], source: str = "") -> Any:
        request = Request(next(self._ids), op, source, params=params)
        try:
            # Never blocking (as `pyzdb.net.channel.Channel.send`): a socket whose handshake
            # failed has no peer left to queue on (libzmq dropped it and does not reconnect,
            # `curve.configure`), and a blocking send would wait there forever, silent.
            socket.send(pack(request), zmq.NOBLOCK)
        except zmq.Again:
            raise _NoAnswer() from None
        deadline = time.monotonic() + PRIMARY_TIMEOUT
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            # ignore: pyzmq takes a float timeout in ms (Poller.poll converts it)
            if left <= 0 or not socket.poll(min(left, 0.5) * 1000):  # type: ignore[arg-type]
                if left <= 0:
                    raise _NoAnswer()
                continue
            reply = decode_reply(socket.recv_multipart()[-1], MAX_REPLY_SIZE)
            if reply.id != request.id:
                continue
            if not reply.ok:
                assert reply.error is not None  # a Reply that is not ok holds its error
                raise info_to_exception(reply.error)
            return reply.value
        raise _NoAnswer()

    def _fetch_records(self, socket: zmq.Socket) -> None:
        stream = self._stream
        after = self._engine.last_seq
        answer = self._ask(
            socket,
            "replicate",
            {
                "after": after,
                "history": stream.history,
                "crc": stream.last_crc,
                "name": stream.name,
            },
        )
        stream.primary_seq = answer["last"]
        if answer.get("resync"):
            log.warning("the primary says start over: %s", answer["resync"])
            stream.resync = True
            return
        stream.state = "streaming"
        records = answer["records"]
        if not records:
            if after >= stream.primary_seq:
                stream.caught_up_at = time.time()
            return
        self._fetch_blobs(socket, [record[1][-1] for record in records])
        self._handoff.give(("records", records), self._stop)
        if self._engine.last_seq >= stream.primary_seq:
            stream.caught_up_at = time.time()

    def _fetch_snapshot(self, socket: zmq.Socket) -> None:
        parts: list[bytes] = []
        tags: list[Any] = []
        token, offset = None, 0
        while True:
            answer = self._ask(socket, "snapshot", {"token": token, "offset": offset})
            token = answer["token"]
            tags = answer["tags"] if offset == 0 else tags
            parts.append(answer["chunk"])
            offset += len(answer["chunk"])
            if offset >= answer["size"] or not answer["chunk"]:
                break
        tree = decode_value(b"".join(parts), MAX_REPLY_SIZE)
        self._fetch_blobs(socket, [tree])
        self._stream.resync = False
        self._handoff.give(("snapshot", answer["seq"], tree, answer["history"], tags), self._stop)

    def _fetch_blobs(self, socket: zmq.Socket, values: list[Any]) -> None:
        """Copy every blob `values` refer to that this replica lacks, before they are applied."""
        blob_dir = self._engine.blob_dir
        for digest in sorted(_file_digests(values)):
            target = blob_dir / digest
            if target.exists():
                continue
            data = self._ask(socket, "blob", {}, source=digest)
            if hashlib.sha256(data).hexdigest() != digest:
                raise Error(f"blob {digest} from the primary does not match its digest")
            self._engine._store_blob(data)


def _close(socket: zmq.Socket, monitor: zmq.Socket | None) -> None:
    if monitor is not None:
        with contextlib.suppress(zmq.ZMQError):
            socket.disable_monitor()
        monitor.close(linger=0)
    socket.close(linger=0)


def _handshake_refusal(
    monitor: zmq.Socket | None, credential: Any, uri: str
) -> AuthenticationError | None:
    """The refusal a failed CURVE handshake reported on `monitor`, if it did (else None)."""
    if monitor is None:
        return None
    from zmq.utils.monitor import recv_monitor_message

    failed = None
    with contextlib.suppress(zmq.Again):
        while True:
            event = int(recv_monitor_message(monitor, zmq.NOBLOCK)["event"])
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                failed = None
            else:
                failed = event
    return None if failed is None else curve.refusal(failed, credential, uri)


class _NoAnswer(Exception):
    """The primary did not answer in time."""


def _file_digests(values: list[Any]) -> set[str]:
    """Digests of the frozen File markers anywhere in `values`."""
    found: set[str] = set()
    stack = list(values)
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is frozenset:
            for entry in value:
                if type(entry) is tuple and len(entry) == 4 and entry[0] == _FILE_TAG:
                    found.add(entry[1])
        elif kind is dict:
            stack.extend(value.values())
        elif kind in (list, tuple):
            stack.extend(value)
    return found


__all__ = ["PRIMARY_TIMEOUT", "REFUSED_PAUSE", "Fetcher", "Handoff", "Stream"]
