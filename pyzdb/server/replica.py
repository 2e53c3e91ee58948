"""A read-only replica: `pyzdb-server --replica-of URI` follows a primary's journal.

Theory of operation
-------------------
Two threads share the work, because the engine belongs to the server's main thread:

- the *fetch thread* (`Follower._run`) talks to the primary over its own DEALER socket. It
  asks for a snapshot when the replica is new or was told to start over, and otherwise for the
  records after the seq the replica has applied (``replicate``, see `pyzdb.server.feed`). It also
  copies every blob a record or snapshot refers to before handing either over. Then it queues
  the batch and wakes the main loop through a pipe, and waits until the batch is applied
  before it asks again: a pull is the acknowledgement of what was applied, and the only
  credit the primary gets, so nothing is dropped and a slow replica only slows itself.
- the *main loop* (`apply_ready`, called by the server each turn) applies a batch: each record
  is appended to the replica's own journal under the primary's seq and its effects applied to
  the tree, then the journal is synced. A snapshot replaces the directory's checkpoint and
  journal (`Journal.install_checkpoint`) and the tree.

The REPLICA file in the data directory holds the primary's URI and the history id it follows.
After a restart, the replica recovers its own journal and resumes after its last seq, sending
the checksum of its last record so the primary can tell a fork (see `pyzdb.server.feed`). Started
without `--replica-of`, the directory is served as a primary under a new history id (the REPLICA
file is what tells `feed.Hub` it was promoted).

A primary started with `--keys` is followed with `--key FILE` (or `$PYZDB_KEY`): the fetch socket
is then a CURVE client with that credential (`curve.configure`), and the key needs the admin
role (`replicate` and `snapshot` do, see `auth.OP_ROLES`). A key the primary refuses (an
unknown key, a handshake failure, or a role below admin) does not stop the replica: it logs one
clear error, reports ``state: refused`` in info, keeps serving what it has, and asks again every
`REFUSED_PAUSE` seconds (the primary's access list may be fixed meanwhile: it is reloaded).

A replica answers `query`, `history`, `blob`, `info`, `watch` and `ping`; a read that carries a
`min_seq` it has not applied waits for it (read-your-writes). Everything that would write is
refused with `ReadOnlyError`, naming the primary.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import queue
import threading
import time
from typing import Any

import zmq

from pyzdb.codec import MAX_REPLY_SIZE, decode_value
from pyzdb.errors import AuthenticationError, Error, ReadOnlyError, SecurityError
from pyzdb.net import curve
from pyzdb.net.errorinfo import info_to_exception
from pyzdb.net.messages import Request, decode_reply, pack
from pyzdb.storage.history import (
    REPLICA_FILE,
    read_replica_state,
    record_checksum,
    save_tags,
    write_small_file,
)
from pyzdb.storage.store import Store

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
#: A replica checkpoints its own directory every this many applied records (it refuses the
#: `checkpoint` op, and the primary's checkpoints are not journal records), so its journal and
#: its recovery time stay bounded.
CHECKPOINT_EVERY = 1_000_000
#: Ops a replica refuses, with what to do instead.
_WRITE_OPS = (
    "execute",
    "undo",
    "redo",
    "checkpoint",
    "lock",
    "begin",
    "unlock",
    "commit",
    "rollback",
)
_FILE_TAG = "pyzdb.File"


class Follower:
    """The replica side of the stream, owned by a `pyzdb.server.loop.Server`."""

    def __init__(self, server: Any, primary: str, key: str | None = None) -> None:
        self.server = server
        #: The credential the fetch socket presents (`--key`, else `$PYZDB_KEY`), or None.
        self.credential = curve.credential_for(key)
        self._refused: str | None = None
        self.engine = server.engine
        self.primary = primary
        self.name = f"{os.uname().nodename}:{os.getpid()}:{server.config.bind}"
        marker = read_replica_state(self.engine.directory) or {}
        if marker.get("primary") not in (None, primary):
            log.warning("this directory followed %s; now following %s", marker["primary"], primary)
        self.history: str | None = marker.get("history")
        self.state = "disconnected"
        self.primary_seq = 0
        self.caught_up_at = time.time()
        self._batches: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._applied = threading.Condition()
        self._handed = 0  # batches queued (fetch thread) / applied (main thread)
        self._done = 0
        self._ids = itertools.count(1)
        self._resync = False
        self._stop = threading.Event()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._thread = threading.Thread(target=self._run, name="pyzdb-replica", daemon=True)
        self._last_crc = self._own_last_crc()
        self._checkpointed = self.engine.recovery.checkpoint_seq

    # -- the server's hooks --------------------------------------------------------------------

    def refused_ops(self) -> dict[str, Any]:
        """The server's handlers for every op a replica refuses."""

        def refuse(request: Request, params: dict[str, Any]) -> None:
            raise ReadOnlyError(
                f"this server is a read-only replica: send {request.op} to the "
                f"primary at {self.primary}"
            )

        return {op: refuse for op in _WRITE_OPS}

    def fileno(self) -> int:
        return self._read_fd

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read_fd, 4096):
                pass

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._applied:
            self._applied.notify_all()
        if self._thread.is_alive():
            self._thread.join(PRIMARY_TIMEOUT + 1)
        os.close(self._read_fd)
        os.close(self._write_fd)

    def info(self) -> dict[str, Any]:
        """The ``replication`` section of a replica's info."""
        applied = self.engine.last_seq
        lag = max(0, self.primary_seq - applied)
        return {
            "role": "replica",
            "primary": self.primary,
            "history": self.history,
            "state": self.state,
            "applied_seq": applied,
            "primary_seq": self.primary_seq,
            "lag_records": lag,
            "lag_seconds": 0.0 if lag == 0 else max(0.0, time.time() - self.caught_up_at),
        }

    def apply_ready(self) -> None:
        """Apply the batches the fetch thread queued (main thread, each turn)."""
        while True:
            try:
                batch = self._batches.get_nowait()
            except queue.Empty:
                return
            try:
                if batch[0] == "snapshot":
                    self._install(*batch[1:])
                else:
                    self._apply(batch[1])
            except Exception as exc:  # a bad batch: start over rather than serve wrong data
                log.error(
                    "could not apply what the primary sent (%s): starting over from a snapshot", exc
                )
                self._resync = True
            with self._applied:
                self._done += 1
                self._applied.notify_all()

    # -- applying (main thread) ------------------------------------------------------------------

    def _apply(self, records: list[Any]) -> None:
        engine = self.engine
        for seq, record, crc in records:
            if seq != engine.last_seq + 1:
                raise Error(f"record seq {seq} arrived where {engine.last_seq + 1} was due")
            effects = record[-1]
            engine.journal.append(record, sync=False)
            for effect in effects:
                engine.store.apply(effect)
            self._last_crc = crc
        engine.journal.sync()
        if engine.last_seq - self._checkpointed >= CHECKPOINT_EVERY:
            engine.checkpoint()
            self._checkpointed = engine.last_seq

    def _install(self, seq: int, tree: Any, history: str, tags: list[Any]) -> None:
        engine = self.engine
        save_tags(engine.directory, tags)  # exactly-once for the units the snapshot covers
        engine.journal.install_checkpoint(seq, tree)
        engine.store = Store(
            tree, undo_depth=engine.config.undo_depth, blob_sink=engine._store_blob
        )
        self.history = history
        self._last_crc = None
        self._checkpointed = seq
        write_small_file(
            os.path.join(engine.directory, REPLICA_FILE),
            json.dumps({"primary": self.primary, "history": history}),
        )
        log.info("installed a snapshot of %s at seq %d (history %s)", self.primary, seq, history)

    def _own_last_crc(self) -> int | None:
        last = self.engine.last_seq
        if not last:
            return None
        try:
            stream = self.engine.journal.records_since(last - 1)
            found = list(stream)
        except Error:
            return None
        return record_checksum(found[0][1]) if found else None

    # -- fetching (the fetch thread) -------------------------------------------------------------

    def _run(self) -> None:
        context = self.server._context
        socket = monitor = None
        try:
            while not self._stop.is_set():
                if socket is None:
                    socket = context.socket(zmq.DEALER)
                    socket.setsockopt(zmq.LINGER, 0)
                    curve.configure(socket, self.credential)
                    monitor = socket.get_monitor_socket(_HANDSHAKE_EVENTS)
                    socket.connect(self.primary)
                try:
                    if self._resync or self.history is None:
                        self.state = "syncing"
                        self._fetch_snapshot(socket)
                    else:
                        self._fetch_records(socket)
                    self._refused = None
                except _NoAnswer:
                    refused = _handshake_refusal(monitor, self.credential, self.primary)
                    self._close(socket, monitor)
                    socket = monitor = None
                    if refused is not None:
                        self._refuse(refused)
                    else:
                        self.state = "disconnected"
                        self._stop.wait(RETRY_PAUSE)
                except (SecurityError, AuthenticationError) as exc:
                    self._refuse(exc)
                except Exception:
                    log.exception("replication from %s failed; trying again", self.primary)
                    self._stop.wait(RETRY_PAUSE)
        finally:
            if socket is not None:
                self._close(socket, monitor)

    @staticmethod
    def _close(socket: zmq.Socket, monitor: zmq.Socket | None) -> None:
        if monitor is not None:
            with contextlib.suppress(zmq.ZMQError):
                socket.disable_monitor()
            monitor.close(linger=0)
        socket.close(linger=0)

    def _refuse(self, exc: Exception) -> None:
        """The primary refused this replica's key: say so once, keep serving, ask again later."""
        self.state = "refused"
        message = str(exc)
        if message != self._refused:
            log.error(
                "the primary %s refused this replica: %s (a replica of a primary with "
                "--keys needs --key FILE with a key of the admin role); still serving "
                "seq %d read-only, asking again every %g s",
                self.primary,
                message,
                self.engine.last_seq,
                REFUSED_PAUSE,
            )
            self._refused = message
        self._stop.wait(REFUSED_PAUSE)

    def _ask(self, socket: zmq.Socket, op: str, params: dict[str, Any], source: str = "") -> Any:
        request = Request(next(self._ids), op, source, params=params)
        socket.send(pack(request))
        deadline = time.monotonic() + PRIMARY_TIMEOUT
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or not socket.poll(min(left, 0.5) * 1000):
                if left <= 0:
                    raise _NoAnswer()
                continue
            reply = decode_reply(socket.recv_multipart()[-1], MAX_REPLY_SIZE)
            if reply.id != request.id:
                continue
            if not reply.ok:
                raise info_to_exception(reply.error)
            return reply.value
        raise _NoAnswer()

    def _fetch_records(self, socket: zmq.Socket) -> None:
        after = self.engine.last_seq
        answer = self._ask(
            socket,
            "replicate",
            {"after": after, "history": self.history, "crc": self._last_crc, "name": self.name},
        )
        self.primary_seq = answer["last"]
        if answer.get("resync"):
            log.warning("the primary says start over: %s", answer["resync"])
            self._resync = True
            return
        self.state = "streaming"
        records = answer["records"]
        if not records:
            if after >= self.primary_seq:
                self.caught_up_at = time.time()
            return
        self._fetch_blobs(socket, [record[1][-1] for record in records])
        self._hand_over(("records", records))
        if self.engine.last_seq >= self.primary_seq:
            self.caught_up_at = time.time()

    def _fetch_snapshot(self, socket: zmq.Socket) -> None:
        parts, token, offset, tags = [], None, 0, []
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
        self._resync = False
        self._hand_over(("snapshot", answer["seq"], tree, answer["history"], tags))

    def _hand_over(self, batch: tuple[Any, ...]) -> None:
        """Queue a batch for the main loop and wait until it is applied (the credit)."""
        self._handed += 1
        self._batches.put(batch)
        with contextlib.suppress(BlockingIOError):
            os.write(self._write_fd, b"\0")
        with self._applied:
            while self._done < self._handed and not self._stop.is_set():
                self._applied.wait(0.5)

    def _fetch_blobs(self, socket: zmq.Socket, values: list[Any]) -> None:
        """Copy every blob `values` refer to that this replica lacks, before they are applied."""
        blob_dir = self.engine.blob_dir
        for digest in sorted(_file_digests(values)):
            target = blob_dir / digest
            if target.exists():
                continue
            data = self._ask(socket, "blob", {}, source=digest)
            if hashlib.sha256(data).hexdigest() != digest:
                raise Error(f"blob {digest} from the primary does not match its digest")
            self.engine._store_blob(data)


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


__all__ = ["Follower", "PRIMARY_TIMEOUT", "REFUSED_PAUSE"]
