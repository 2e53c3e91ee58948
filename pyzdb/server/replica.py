"""A read-only replica: `pyzdb-server --replica-of URI` follows a primary's journal.

Theory of operation
-------------------
Two threads share the work, because the engine belongs to the server's main thread:

- the *fetch thread* (`pyzdb.server.fetch`) talks to the primary over its own DEALER socket,
  copies the blobs a batch refers to, hands the batch over, and waits until it is applied
  before it asks again (the primary's only credit, so a slow replica only slows itself).
- the *main loop* (`Follower.apply_ready`, called by the server each turn) applies a batch:
  each record is appended to the replica's own journal under the primary's seq and its
  effects applied to the tree, then the journal is synced. A snapshot replaces the
  directory's checkpoint and journal (`Journal.install_checkpoint`) and the tree.

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

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from pyzdb.errors import Error, ReadOnlyError
from pyzdb.net import curve
from pyzdb.net.messages import Request
from pyzdb.server.fetch import Fetcher, Handoff, Stream
from pyzdb.storage.history import (
    REPLICA_FILE,
    read_replica_state,
    record_checksum,
    save_tags,
    write_small_file,
)
from pyzdb.storage.store import Store

if TYPE_CHECKING:
    from pyzdb.server.loop import Server

log = logging.getLogger("pyzdb.replica")

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


class Follower:
    """The replica side of the stream, owned by a `pyzdb.server.loop.Server`."""

    def __init__(self, server: Server, primary: str, key: str | None = None) -> None:
        self.server = server
        #: The credential the fetch socket presents (`--key`, else `$PYZDB_KEY`), or None.
        credential = curve.credential_for(key)
        self.engine = server.engine
        self.primary = primary
        marker = read_replica_state(self.engine.directory) or {}
        if marker.get("primary") not in (None, primary):
            log.warning("this directory followed %s; now following %s", marker["primary"], primary)
        self.stream = Stream(
            primary,
            f"{os.uname().nodename}:{os.getpid()}:{server.config.bind}",
            marker.get("history"),
            self._own_last_crc(),
        )
        self._handoff = Handoff()
        self._fetcher = Fetcher(self.engine, self.stream, self._handoff, credential)
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
        """The pipe the loop polls: readable when the fetch thread has handed a batch over."""
        return self._handoff.pipe.fileno()

    def clear(self) -> None:
        self._handoff.pipe.clear()

    def start(self) -> None:
        self._fetcher.start(self.server.context)

    def stop(self) -> None:
        self._fetcher.stop()
        self._handoff.pipe.close()

    def info(self) -> dict[str, Any]:
        """The ``replication`` section of a replica's info."""
        stream = self.stream
        applied = self.engine.last_seq
        lag = max(0, stream.primary_seq - applied)
        return {
            "role": "replica",
            "primary": self.primary,
            "history": stream.history,
            "state": stream.state,
            "applied_seq": applied,
            "primary_seq": stream.primary_seq,
            "lag_records": lag,
            "lag_seconds": 0.0 if lag == 0 else max(0.0, time.time() - stream.caught_up_at),
        }

    def apply_ready(self) -> None:
        """Apply the batches the fetch thread queued (main thread, each turn)."""
        while (batch := self._handoff.take()) is not None:
            try:
                if batch[0] == "snapshot":
                    self._install(*batch[1:])
                else:
                    self._apply(batch[1])
            except Exception as exc:  # a bad batch: start over rather than serve wrong data
                log.error(
                    "could not apply what the primary sent (%s): starting over from a snapshot", exc
                )
                self.stream.resync = True
            self._handoff.applied()

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
            self.stream.last_crc = crc
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
        self.stream.history = history
        self.stream.last_crc = None
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


__all__ = ["Follower"]
