"""The server's side of the journal stream: change feeds, replicas pulling records, snapshots.

Everything here reads the journal the engine writes; nothing here writes the tree. The server
owns one `Hub` and calls it at three points (see `pyzdb.server.loop`): `intercept` for each
request before the lock queue, `wake` at the end of each turn, `next_deadline` for its poll
timeout. Its parts: the change feed over the journal (`pyzdb.changefeed`), snapshots
(`pyzdb.server.snapshots`) and what a primary knows of its replicas (`pyzdb.server.replicaset`).

Theory of operation
-------------------
*Pull, never push.* A replica asks for the records after the seq it has applied (``replicate``
with ``after``), applies them and asks again: each request acknowledges everything up to its
``after``, and it is the replica's only credit, so a slow replica slows its own stream and
nothing is ever dropped (no PUB/SUB). When nothing is new, the request is *parked* here until
a record is durable or `LONG_POLL` seconds pass, so an idle stream costs one round trip a
second and a busy one delivers within a turn of the loop. A change feed (``watch`` with
``since``) works the same way, filtered by path (`changes.relevant`).

*No gap, no repeat, no wrong data.* Replies go through the server's outbox, which sends them
only once the records they carry are durable, so nobody sees a record a crash could take back.
A replica sends the history id it follows and the checksum of the last record it applied; a
different history id (a primary whose recovery cut a tail, or a promoted replica), a seq the
primary does not have, or a checksum that does not match, means the two histories forked, and
the reply says ``resync``: the replica starts over from a snapshot. So does a replica behind
the retained journal (`--retain-journal`), which the primary logs.

*Exactly-once across a crash*: the server's reply cache is seeded from the request ids
journalled with the recovered units (`pyzdb.server.sessions`).
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from typing import TYPE_CHECKING, Any

from pyzdb.changefeed import BATCH_RECORDS, records_between, visible_seq, watch_reply
from pyzdb.codec import encode_value
from pyzdb.errors import Error, HistoryLost, ProtocolError, ReplicaBehind
from pyzdb.net.messages import Request
from pyzdb.server.parked import Parked
from pyzdb.server.replicaset import ReplicaSet
from pyzdb.server.snapshots import Snapshots
from pyzdb.storage.history import REPLICA_FILE, load_history, read_replica_state, record_checksum

if TYPE_CHECKING:
    from pyzdb.server.auth import Grant
    from pyzdb.server.loop import Server
    from pyzdb.server.replica import Follower

log = logging.getLogger("pyzdb.feed")

#: Longest a watch or replicate request waits for a new record before an empty answer.
LONG_POLL = 1.0
#: Encoded bytes of records one replicate reply carries beyond its first record.
BATCH_BYTES = 32 * 1024 * 1024
#: Requests parked at once (watches, replica pulls, reads waiting for a seq); more wait no more.
MAX_PARKED = 10_000
#: Ops served here without waiting for the lock: they read only the journal or a snapshot.
_JOURNAL_OPS = frozenset({"replicate", "info"})


class Hub:
    """The stream side of one server (`follower` set: a replica's; see the module docstring)."""

    def __init__(self, server: Server, follower: Follower | None = None) -> None:
        self.server = server
        self.engine = server.engine
        self.journal = self.engine.journal
        self.follower = follower
        #: The history id this primary serves (None on a replica: its primary's is followed).
        self.history: str | None = None
        if follower is None:
            self.history = self._load_history()
        self.replicas = ReplicaSet(self.engine, server.config.replica_backlog)
        self._parked: list[Parked] = []
        self.ops = {
            "watch": self._op_watch,
            "replicate": self._op_replicate,
            "snapshot": Snapshots(self.engine, self.history).op,
        }
        if follower is None:
            self.journal.hold = self.replicas.floor

    def _load_history(self) -> str:
        """The primary's history id: renewed when recovery cut a tail or a replica is promoted."""
        marker = read_replica_state(self.engine.directory)
        history = load_history(
            self.engine.directory, renew=marker is not None or self.journal.cut_tail
        )
        if marker is not None:
            log.warning(
                "%s was a replica of %s: serving it as a primary under the new "
                "history id %s (its replicas start over)",
                self.engine.directory,
                marker.get("primary"),
                history,
            )
            os.unlink(os.path.join(self.engine.directory, REPLICA_FILE))
        elif self.journal.cut_tail:
            log.warning("recovery cut a torn tail: new history id %s", history)
        return history

    # -- hooks of the server loop --------------------------------------------------------------

    def intercept(
        self,
        envelope: list[bytes],
        request: Request,
        grant: Grant | None,
        frame: bytes = b"",
    ) -> bool:
        """Park a request that must wait for a seq, or run a journal-only one past the lock
        queue. True: handled here (the server does nothing more with it)."""
        op = request.op
        if op == "query" and request.min_seq > self.engine.last_seq and self.follower:
            return self._park(envelope, request, grant, request.min_seq, True, frame)
        if op in ("watch", "replicate"):
            params = request.params
            seq = params.get("since" if op == "watch" else "after")
            if (
                type(seq) is int
                and seq >= self._visible()
                and (not params.get("base") or seq > self.engine.last_seq)
            ):
                if op == "watch" and self.follower is None and seq > self.engine.last_seq:
                    return False  # the primary's history ends before it: HistoryLost now
                return self._park(envelope, request, grant, seq, False)
        if op in _JOURNAL_OPS or (op == "snapshot" and request.params.get("token")):
            self.server.dispatch.run(envelope, request, grant, frame)
            return True
        return False

    def _park(
        self,
        envelope: list[bytes],
        request: Request,
        grant: Grant | None,
        seq: int,
        reached: bool,
        frame: bytes = b"",
    ) -> bool:
        if request.session:
            for parked in self._parked:  # a resend (lazy pirate): answer it on its new socket
                if parked.request.id == request.id and parked.request.session == request.session:
                    parked.envelope = envelope
                    return True
        if len(self._parked) >= MAX_PARKED:
            return False
        wait = LONG_POLL if request.wait is None else request.wait
        if not reached:
            wait = min(wait, LONG_POLL)
        self._parked.append(
            Parked(envelope, request, grant, time.monotonic() + wait, seq, reached, frame)
        )
        return True

    def wake(self) -> bool:
        """End of a turn: note new commits, answer parked requests whose wait is over.

        True when some were answered (their replies are in the server's outbox)."""
        self.replicas.note_commits()
        if not self._parked:
            return False
        now = time.monotonic()
        visible, last = self._visible(), self.engine.last_seq
        ready: list[Parked] = []
        waiting: list[Parked] = []
        for parked in self._parked:
            due = (last >= parked.seq) if parked.reached else (visible > parked.seq)
            (ready if due or now >= parked.deadline else waiting).append(parked)
        self._parked = waiting
        dispatch = self.server.dispatch
        for parked in ready:
            if parked.reached and last < parked.seq:
                dispatch.fail(parked.envelope, parked.request, self._behind(last, parked.seq))
            else:
                dispatch.run(parked.envelope, parked.request, parked.grant, parked.frame)
        return bool(ready)

    def _behind(self, last: int, seq: int) -> ReplicaBehind:
        if self.server.config.behind_front:  # the front's shadow: its clients know no replica
            return ReplicaBehind(
                f"the server is busy with a long request, and the copy that answers reads "
                f"meanwhile has applied seq {last}, not yet seq {seq} that this read must see; "
                "try again when that request ends"
            )
        return ReplicaBehind(
            f"this replica has applied seq {last}, not yet seq {seq} that the read must see "
            "(read-your-writes); ask the primary"
        )

    def next_deadline(self) -> float | None:
        """Monotonic time of the earliest parked deadline, for the loop's poll timeout."""
        return min((parked.deadline for parked in self._parked), default=None)

    def _visible(self) -> int:
        """Newest seq a stream may show: a primary's durable one (what a crash keeps)."""
        if self.follower is not None:
            return self.engine.last_seq
        return visible_seq(self.journal)

    def replication_info(self) -> dict[str, Any]:
        """The ``replication`` section of info: replicas (primary) or the stream (replica)."""
        if self.follower is not None:
            return self.follower.info()
        return self.replicas.info(self.history)

    # -- the ops ----------------------------------------------------------------------------------

    def _op_watch(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        return watch_reply(self.engine, params, self._visible(), self.follower is not None)

    def _op_replicate(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        after, history, crc = params.get("after"), params.get("history"), params.get("crc")
        name = params.get("name")
        if not (
            type(after) is int
            and after >= 0
            and type(name) is str
            and len(name) < 1024
            and (history is None or type(history) is str)
            and (crc is None or type(crc) is int)
        ):
            raise ProtocolError(
                "replicate needs params after (seq), name (str), history "
                "(str or None) and crc (int or None)"
            )
        if self.follower is not None:
            raise Error(
                f"this server is a replica: replicate from its primary {self.follower.primary}"
            )
        self.replicas.saw(name, after)
        last = self.engine.last_seq
        reason = None
        if history != self.history:
            reason = (
                "a new replica"
                if history is None
                else f"history {history} is not the primary's {self.history}"
            )
        elif after > last:
            reason = f"the replica is at seq {after}, past the primary's last seq {last}"
        elif after and after < self.journal.first_seq - 1:
            reason = (
                f"the replica is at seq {after}, behind the retained journal (it starts "
                f"at seq {self.journal.first_seq})"
            )
            log.warning(
                "replica %s fell behind the retained journal: it resyncs from a "
                "snapshot (raise --retain-journal to avoid this)",
                name,
            )
        if reason is None:
            # The checksum of the replica's last record, while the primary still has it.
            checked = after and crc is not None and after >= self.journal.first_seq
            start = after - 1 if checked else after
            try:
                found = records_between(
                    self.journal, start, min(self._visible(), after + BATCH_RECORDS)
                )
            except HistoryLost as exc:
                found, reason = [], str(exc)
            if found and start < after:
                if record_checksum(found[0][1]) != crc:
                    reason = f"the replica's record at seq {after} differs from the primary's"
                found = found[1:]
        if reason is not None:
            return {"resync": reason, "history": self.history, "last": last, "records": []}
        records: list[list[Any]] = []
        size = 0
        for seq, record in found:  # at least one record; then up to BATCH_BYTES
            encoded = encode_value(record)
            size += len(encoded)
            if records and size > BATCH_BYTES:
                break
            records.append([seq, record, zlib.crc32(encoded)])
        return {"history": self.history, "last": last, "records": records}


__all__ = ["Hub", "LONG_POLL"]
