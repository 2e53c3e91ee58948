"""The change feed over one engine's journal: what `watch` answers, on a server or embedded.

Nothing here knows of sockets or the server: `pyzdb.embedded` answers its `watch` with
`watch_reply` too, and the server's hub (`pyzdb.server.feed`) and scoped watches
(`pyzdb.server.tenancy`) build on it.

*Resuming a feed at an old seq* needs the watched value as of that seq (for the old values of
the next changes): it is rebuilt from the newest checkpoint at or before it plus the records
up to it (`value_at`). The journal keeps such a checkpoint for every retained seq. A feed
asking for records that are no longer retained gets `HistoryLost`, never a silent skip.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any, cast

from pyzdb.api.changes import MISSING, Shadow, lookup, relevant
from pyzdb.errors import Error, HistoryLost, ProtocolError
from pyzdb.values import thaw_file

#: Default of `--retain-journal`: records readable after a checkpoint. A million small units
#: is a busy day's writes for most users of pyzdb, and costs about their size on disk.
DEFAULT_RETAIN = 1_000_000
#: Records one reply carries at most (a replica or watcher asks again for the rest).
BATCH_RECORDS = 2000


def unfreeze(value: Any) -> Any:
    """A frozen value (journal, checkpoint) with its File markers as `File`s, for the wire.

    >>> unfreeze({"a": [1, (2, 3)]})
    {'a': [1, (2, 3)]}
    """
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
    watched = tuple(cast("list[Any] | tuple[Any, ...]", path))  # its type checked above
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
    for seq, record in records_between(engine.journal, since, min(visible, since + BATCH_RECORDS)):
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


def records_between(journal: Any, after: int, end: int) -> list[tuple[int, Any]]:
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
                    shadow.apply(record_seq, _own(effect))
    finally:
        _close(stream)
    return shadow


def _own(effect: Any) -> Any:
    """`effect` with its own copy of the dict or list it carries (always its last item).

    The journal's records are shared: it keeps the newest in memory as they were appended and
    hands the same objects to every reader (replicas, feeds, this). A `Shadow` takes the values
    it applies as its own and changes them with the later effects, so it must get copies, or
    the record itself would change (then replayed wrong, and its checksum no longer matching
    what a replica was sent).
    """
    value = effect[-1]
    if isinstance(value, (dict, list)):
        return (*effect[:-1], copy.deepcopy(value))
    return effect


def _close(stream: Any) -> None:
    """Close a `records_since` iterator early (it holds the segment files open)."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()


__all__ = [
    "BATCH_RECORDS",
    "DEFAULT_RETAIN",
    "records_between",
    "unfreeze",
    "value_at",
    "visible_seq",
    "watch_reply",
]
