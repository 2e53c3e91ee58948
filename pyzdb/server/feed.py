"""The server's side of the journal stream: change feeds, replicas pulling records, snapshots.

Everything here reads the journal the engine writes; nothing here writes the tree. The server
owns one `Hub` and calls it at three points (see `pyzdb.server.loop`): `intercept` for each request
before the lock queue, `wake` at the end of each turn, `next_deadline` for its poll timeout.

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
the retained journal (`--retain-journal`), which the primary logs. A feed asking for records
that are no longer retained gets `HistoryLost`, never a silent skip.

*Resuming a feed at an old seq* needs the watched value as of that seq (for the old values of
the next changes): it is rebuilt from the newest checkpoint at or before it plus the records
up to it (`value_at`). The journal keeps such a checkpoint for every retained seq.

*Exactly-once across a crash*: the Hub seeds the server's reply cache from the request ids
journalled with the recovered units (`pyzdb.storage.history`).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import os
import time
import uuid
import zlib
from typing import Any

from pyzdb.api.changes import MISSING, Shadow, lookup, relevant
from pyzdb.codec import encode_value
from pyzdb.errors import Error, HistoryLost, ProtocolError, ReplicaBehind
from pyzdb.net.errorinfo import error_to_info
from pyzdb.net.messages import Reply, Request
from pyzdb.storage.history import (
    REPLICA_FILE,
    load_history,
    make_tag,
    read_replica_state,
    record_checksum,
    seed_reply_cache,
    tags_before,
)
from pyzdb.values import thaw_file

log = logging.getLogger("pyzdb.feed")

#: Default of `--retain-journal`: records readable after a checkpoint. A million small units
#: is a busy day's writes for most users of pyzdb, and costs about their size on disk.
DEFAULT_RETAIN = 1_000_000
#: Longest a watch or replicate request waits for a new record before an empty answer.
LONG_POLL = 1.0
#: Records one reply carries at most (a replica or watcher asks again for the rest).
BATCH_RECORDS = 2000
#: Encoded bytes of records one replicate reply carries beyond its first record.
BATCH_BYTES = 32 * 1024 * 1024
#: Bytes of a snapshot one reply carries.
SNAPSHOT_CHUNK = 4 * 1024 * 1024
#: Bytes of journalled results a snapshot carries for exactly-once (see `pyzdb.storage.history`).
SNAPSHOT_TAG_BYTES = 16 * 1024 * 1024
#: Seconds a snapshot stays in memory for the replica fetching it; at most `SNAPSHOTS` at once.
SNAPSHOT_TTL = 120.0
SNAPSHOTS = 2
#: Requests parked at once (watches, replica pulls, reads waiting for a seq); more wait no more.
MAX_PARKED = 10_000
#: A replica not heard from for this long is not counted (by info or `wait`).
REPLICA_GONE = 30.0
#: Replicas a primary keeps track of (and holds journal records for) at once.
MAX_REPLICAS = 64
#: A replica not heard from for this long no longer holds journal records on the primary.
REPLICA_FORGET = 3600.0
#: Records the primary keeps for one replica beyond `--retain-journal`: past this backlog the
#: replica starts over from a snapshot instead (and the primary logs it).
REPLICA_BACKLOG = 10_000_000
#: Ops served here without waiting for the lock: they read only the journal or a snapshot.
_JOURNAL_OPS = frozenset({"replicate", "info"})


def unfreeze(value: Any) -> Any:
    """A frozen value (journal, checkpoint) with its File markers as `File`s, for the wire."""
    kind = type(value)
    if kind is frozenset:
        return thaw_file(value)
    if kind is dict:
        return {key: unfreeze(item) for key, item in value.items()}
    if kind is list:
        return [unfreeze(item) for item in value]
    if kind is tuple:
        return tuple(unfreeze(item) for item in value)
    return value


# -- the hub -------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Parked:
    envelope: list[bytes]
    request: Request
    params: dict[str, Any]
    control: dict[str, Any]
    deadline: float
    #: Seq the request waits to see exceeded (watch/replicate) or reached (a read, min_seq).
    seq: int
    reached: bool


@dataclasses.dataclass
class ReplicaSeen:
    """What a primary knows of one replica: from its last pull."""

    name: str
    applied: int
    seen: float


class Hub:
    """The stream side of one server (`follower` set: a replica's; see the module docstring)."""

    def __init__(self, server: Any, follower: Any = None) -> None:
        self.server = server
        self.engine = server.engine
        self.journal = self.engine.journal
        self.follower = follower
        if follower is None:
            marker = read_replica_state(self.engine.directory)
            promoted = marker is not None
            self.history = load_history(
                self.engine.directory, renew=promoted or self.journal.cut_tail
            )
            if promoted:
                log.warning(
                    "%s was a replica of %s: serving it as a primary under the new "
                    "history id %s (its replicas start over)",
                    self.engine.directory,
                    marker.get("primary"),
                    self.history,
                )
                os.unlink(os.path.join(self.engine.directory, REPLICA_FILE))
            elif self.journal.cut_tail:
                log.warning("recovery cut a torn tail: new history id %s", self.history)
        self.replicas: dict[str, ReplicaSeen] = {}
        self._parked: list[_Parked] = []
        self._snapshots: dict[str, tuple[int, bytes, float, list[Any]]] = {}
        self._commits: collections.deque[tuple[int, float]] = collections.deque(maxlen=100_000)
        self._seen_seq = self.engine.last_seq
        self.ops = {
            "watch": self._op_watch,
            "replicate": self._op_replicate,
            "snapshot": self._op_snapshot,
            "info": self._op_info,
        }
        seed_reply_cache(server.cache, self.engine)
        self.backlog = getattr(server.config, "replica_backlog", REPLICA_BACKLOG)
        if follower is None:
            self.journal.hold = self.replica_floor

    # -- hooks of the server loop --------------------------------------------------------------

    def intercept(
        self,
        envelope: list[bytes],
        request: Request,
        params: dict[str, Any],
        control: dict[str, Any],
    ) -> bool:
        """Park a request that must wait for a seq, or run a journal-only one past the lock
        queue. True: handled here (the server does nothing more with it)."""
        op = request.op
        if op == "query" and request.min_seq > self.engine.last_seq and self.follower:
            return self._park(envelope, request, params, control, request.min_seq, True)
        if op in ("watch", "replicate"):
            seq = params.get("since" if op == "watch" else "after")
            if (
                type(seq) is int
                and seq >= self._visible()
                and (not params.get("base") or seq > self.engine.last_seq)
            ):
                if op == "watch" and self.follower is None and seq > self.engine.last_seq:
                    return False  # the primary's history ends before it: HistoryLost now
                return self._park(envelope, request, params, control, seq, False)
        if op in _JOURNAL_OPS or (op == "snapshot" and params.get("token")):
            self.server._run(envelope, request, params, control)
            return True
        return False

    def _park(
        self,
        envelope: list[bytes],
        request: Request,
        params: dict[str, Any],
        control: dict[str, Any],
        seq: int,
        reached: bool,
    ) -> bool:
        if request.session:
            for parked in self._parked:  # a resend (lazy pirate): answer it on its new socket
                if parked.request.id == request.id and parked.request.session == request.session:
                    parked.envelope = envelope
                    return True
        if len(self._parked) >= MAX_PARKED:
            return False
        wait = control.get("wait", LONG_POLL)
        if not reached:
            wait = min(wait, LONG_POLL)
        self._parked.append(
            _Parked(envelope, request, params, control, time.monotonic() + wait, seq, reached)
        )
        return True

    def wake(self) -> bool:
        """End of a turn: note new commits, answer parked requests whose wait is over.

        True when some were answered (their replies are in the server's outbox)."""
        last = self.engine.last_seq
        if last != self._seen_seq:
            self._commits.append((last, time.time()))
            self._seen_seq = last
        if not self._parked:
            return False
        now = time.monotonic()
        visible, last = self._visible(), self.engine.last_seq
        ready, waiting = [], []
        for parked in self._parked:
            due = (last >= parked.seq) if parked.reached else (visible > parked.seq)
            (ready if due or now >= parked.deadline else waiting).append(parked)
        self._parked = waiting
        for parked in ready:
            if parked.reached and last < parked.seq:
                error = ReplicaBehind(
                    f"this replica has applied seq {last}, not yet seq {parked.seq} that the "
                    f"read must see (read-your-writes); ask the primary"
                )
                self.server._reply(
                    parked.envelope,
                    parked.request,
                    Reply(parked.request.id, False, None, last, error_to_info(error)),
                )
            else:
                self.server._run(parked.envelope, parked.request, parked.params, parked.control)
        return bool(ready)

    def next_deadline(self) -> float | None:
        """Monotonic time of the earliest parked deadline, for the loop's poll timeout."""
        return min((parked.deadline for parked in self._parked), default=None)

    def _visible(self) -> int:
        """Newest seq a stream may show: a primary's durable one (what a crash keeps)."""
        if self.follower is not None:
            return self.engine.last_seq
        return visible_seq(self.journal)

    # -- watch ------------------------------------------------------------------------------------

    def _op_watch(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        return watch_reply(self.engine, params, self._visible(), self.follower is not None)

    # -- replication --------------------------------------------------------------------------

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
        if name not in self.replicas and len(self.replicas) >= MAX_REPLICAS:
            raise Error(f"this primary already follows {MAX_REPLICAS} replicas")
        self.replicas[name] = ReplicaSeen(name, after, time.time())
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
                found = _records(self.journal, start, min(self._visible(), after + BATCH_RECORDS))
            except HistoryLost as exc:
                found, reason = [], str(exc)
            if found and start < after:
                if record_checksum(found[0][1]) != crc:
                    reason = f"the replica's record at seq {after} differs from the primary's"
                found = found[1:]
        if reason is not None:
            return {"resync": reason, "history": self.history, "last": last, "records": []}
        records, size = [], 0
        for seq, record in found:  # at least one record; then up to BATCH_BYTES
            encoded = encode_value(record)
            size += len(encoded)
            if records and size > BATCH_BYTES:
                break
            records.append([seq, record, zlib.crc32(encoded)])
        return {"history": self.history, "last": last, "records": records}

    def _op_snapshot(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        token, offset = params.get("token"), params.get("offset", 0)
        if not ((token is None or type(token) is str) and type(offset) is int and offset >= 0):
            raise ProtocolError("snapshot needs params token (str or None) and offset (int)")
        if self.follower is not None:
            raise Error("this server is a replica: take a snapshot from its primary")
        now = time.monotonic()
        for old in [
            t for t, (_, _, made, _) in self._snapshots.items() if now - made > SNAPSHOT_TTL
        ]:
            del self._snapshots[old]
        if token is None:
            if self.engine.in_transaction:
                raise Error("the database is locked: ask for the snapshot again")
            while len(self._snapshots) >= SNAPSHOTS:
                del self._snapshots[next(iter(self._snapshots))]
            token = uuid.uuid4().hex
            data = encode_value(self.engine.store.snapshot())
            tags, room = tags_before(self.journal, self.engine.last_seq), SNAPSHOT_TAG_BYTES
            for entry in tags:  # results beyond the room: "applied, result not kept"
                room -= len(entry[1][2] or b"")
                if room < 0:
                    entry[1] = (*entry[1][:2], None)
            self._snapshots[token] = (self.engine.last_seq, data, now, tags)
        found = self._snapshots.get(token)
        if found is None:
            raise Error("that snapshot expired: ask for a new one")
        seq, data, _, tags = found
        chunk = data[offset : offset + SNAPSHOT_CHUNK]
        if offset + len(chunk) >= len(data):
            self._snapshots.pop(token, None)
        return {
            "token": token,
            "seq": seq,
            "size": len(data),
            "history": self.history,
            "chunk": chunk,
            "tags": tags if offset == 0 else [],
        }

    def replica_floor(self) -> int | None:
        """The lowest seq a replica still needs (the journal keeps it), within the backlog."""
        now, last = time.time(), self.engine.last_seq
        needed = None
        for seen in list(self.replicas.values()):
            if now - seen.seen > REPLICA_FORGET:
                del self.replicas[seen.name]
            elif last - seen.applied > self.backlog:
                log.warning(
                    "replica %s is %d records behind, past the backlog of %d kept for "
                    "it: it will start over from a snapshot",
                    seen.name,
                    last - seen.applied,
                    self.backlog,
                )
            elif needed is None or seen.applied < needed:
                needed = seen.applied
        return None if needed is None else max(0, needed - 1)  # its last record: the crc

    # -- info -------------------------------------------------------------------------------------

    def _op_info(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        """The server's `info` sections with the stream's figures and a ``replication``
        section added."""
        sections = self.server.info()
        sections["server"].update(
            {
                "seq": self.engine.last_seq,
                "durable_seq": self.journal.durable_seq,
                "first_retained_seq": self.journal.first_seq,
                "retain_journal": self.journal.retain,
            }
        )
        sections["replication"] = self.replication_info()
        return sections

    def replication_info(self) -> dict[str, Any]:
        """The ``replication`` section of info: replicas (primary) or the stream (replica)."""
        if self.follower is not None:
            return self.follower.info()
        now, last = time.time(), self.engine.last_seq
        replicas = []
        for seen in self.replicas.values():
            if now - seen.seen > REPLICA_GONE:
                continue
            behind = next((when for seq, when in self._commits if seq > seen.applied), None)
            replicas.append(
                {
                    "name": seen.name,
                    "applied_seq": seen.applied,
                    "lag_records": max(0, last - seen.applied),
                    "lag_seconds": 0.0 if behind is None else max(0.0, now - behind),
                    "last_seen": seen.seen,
                }
            )
        return {"role": "primary", "history": self.history, "seq": last, "replicas": replicas}


# -- the change feed over one engine (the server's and the embedded database's) ------------------


def watch_reply(
    engine: Any, params: dict[str, Any], visible: int, replica: bool = False
) -> dict[str, Any]:
    """Answer one poll of a change feed: `params` are ``path``, ``since`` and ``base``.

    ``since=None``: the current value and seq. Otherwise the records after ``since`` up to
    `visible` (at most `BATCH_RECORDS`), each with its effects under the path, and with
    ``base`` the value as of ``since`` as well. The reply's ``seq`` is how far it covered: the
    next poll asks from there. A replica that has not reached ``since`` yet answers with
    nothing (the watcher asks again); a primary raises HistoryLost, as it does for records no
    longer retained.
    """
    path, since = params.get("path"), params.get("since")
    if type(path) not in (list, tuple) or not (
        since is None or (type(since) is int and since >= 0)
    ):
        raise ProtocolError(
            "watch needs params path (a list of keys) and since (None or a seq >= 0)"
        )
    watched = tuple(path)
    last = engine.last_seq
    if since is None:
        if engine.in_transaction:
            raise Error("the database is locked: watch again once the transaction ends")
        value = lookup(engine.store.root, watched)
        return {
            "seq": last,
            "base": True,
            "exists": value is not MISSING,
            "value": None if value is MISSING else value,
            "records": [],
        }
    if since > last:
        if not replica:
            raise HistoryLost(
                f"this server's history ends at seq {last}, before seq "
                f"{since}: it was restored from an older copy"
            )
        return {"seq": since, "base": False, "records": [], "exists": False, "value": None}
    reply: dict[str, Any] = {"base": False, "exists": False, "value": None}
    if params.get("base"):
        shadow = value_at(engine.journal, watched, since)
        reply["base"] = True
        reply["exists"], reply["value"] = shadow.exists, unfreeze(shadow.get())
    covered, records = since, []
    for seq, record in _records(engine.journal, since, min(visible, since + BATCH_RECORDS)):
        covered = seq
        effects = [unfreeze(effect) for effect in record[-1] if relevant(effect, watched)]
        if effects:
            records.append([seq, effects])
    reply["seq"], reply["records"] = covered, records
    return reply


def visible_seq(journal: Any) -> int:
    """Newest seq a feed or replica may be shown: under `--fsync always` the durable one, as
    for replies; under `everysec`/`no` the last (replies do not wait for the disk either, and
    a tail lost in a crash renews the history id, so replicas start over)."""
    if journal.fsync == "always":
        return min(journal.durable_seq, journal.last_seq)
    return journal.last_seq


def _records(journal: Any, after: int, end: int) -> list[tuple[int, Any]]:
    """Records `after`+1 .. `end`; HistoryLost when they are no longer retained."""
    if end <= after:
        return []
    try:
        stream = journal.records_since(after)
    except Error as exc:
        raise HistoryLost(
            f"records after seq {after} are no longer retained ({exc}); "
            "watch again with since=None, or raise --retain-journal"
        ) from None
    try:
        return list(itertools.takewhile(lambda item: item[0] <= end, stream))
    finally:
        _close(stream)


def value_at(journal: Any, watched: tuple[Any, ...], seq: int) -> Shadow:
    """The watched value as of `seq`: a retained checkpoint at or before it + records."""
    first = journal.first_seq
    bases = [c for c in journal.checkpoint_seqs() if first - 1 <= c <= seq]
    if bases:
        base = bases[-1]
        shadow = Shadow(watched, lookup(journal.read_checkpoint(base), watched))
    elif first == 1 or journal.last_seq == 0:
        base, shadow = 0, Shadow(watched, {} if not watched else MISSING)  # () is the root
    else:
        raise HistoryLost(
            f"seq {seq} is older than the retained journal (it starts at "
            f"seq {first}); watch again with since=None"
        )
    if seq <= base:
        return shadow
    try:
        stream = journal.records_since(base)
    except Error as exc:
        raise HistoryLost(f"records after seq {base} are no longer retained ({exc})") from None
    try:
        for record_seq, record in stream:
            if record_seq > seq:
                break
            for effect in record[-1]:
                if relevant(effect, watched):
                    shadow.apply(record_seq, effect)
    finally:
        _close(stream)
    return shadow


def _close(stream: Any) -> None:
    """Close a `records_since` iterator early (it holds the segment files open)."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()


__all__ = [
    "Hub",
    "ReplicaSeen",
    "make_tag",
    "watch_reply",
    "value_at",
    "visible_seq",
    "unfreeze",
    "LONG_POLL",
    "DEFAULT_RETAIN",
    "REPLICA_BACKLOG",
]
