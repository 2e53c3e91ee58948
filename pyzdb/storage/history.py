"""A data directory's identity: its history id, the replica marker, and the request ids
journalled with the units they committed.

*History ids.* Each data directory has one (the `HISTORY` file), which a replica compares with
its primary's to tell that they share a past. It is renewed when the past changed: recovery cut
a torn tail (records a replica may have seen are gone), or a replica's directory is served as a
primary (promotion: its future differs from the old primary's). A replica's directory holds a
`REPLICA` file too, with the primary's URI and the history id it follows.

*Exactly-once across a crash.* The server's reply cache lives in memory. So that a write whose
reply was lost and whose server then crashed is not run again when retried, the engine
journals `(session, request id, encoded result)` with each unit a request committed, and the
server turns those of the recovered journal back into cached replies (`pyzdb.server.sessions`).
A replica journals the same records, so this survives a promotion too.
"""

from __future__ import annotations

import json
import os
import uuid
import zlib
from typing import Any

from pyzdb.codec import MAX_REPLY_SIZE, decode_value, encode_value
from pyzdb.errors import Error

HISTORY_FILE = "HISTORY"
REPLICA_FILE = "REPLICA"
#: A replica's copy of the tags of the units its snapshot covers (msgpack).
TAGS_FILE = "REQUEST_IDS"
#: Results up to this size are journalled with their unit for exactly-once after a crash.
TAG_RESULT_LIMIT = 64 * 1024
#: Tagged units before the recovered checkpoint read back for the reply cache.
TAGS_BEFORE_CHECKPOINT = 10_000


def load_history(directory: str | os.PathLike[str], renew: bool) -> str:
    """The data directory's history id, made anew when `renew` or when there is none."""
    path = os.path.join(directory, HISTORY_FILE)
    if not renew:
        try:
            with open(path) as handle:
                found = handle.read().strip()
            if found:
                return found
        except FileNotFoundError:
            pass
    history = uuid.uuid4().hex
    write_small_file(path, history)
    return history


def write_small_file(path: str, text: str) -> None:
    """Write `text` to `path` whole (temp file, fsync, rename, directory fsync)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_replica_state(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The REPLICA marker of a replica's directory (primary URI, history it follows)."""
    try:
        with open(os.path.join(directory, REPLICA_FILE)) as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return None


def record_checksum(record: Any) -> int:
    """A checksum of one journal record that both sides of a stream compute alike."""
    return zlib.crc32(encode_value(record))


def tags_before(journal: Any, seq: int, limit: int = TAGS_BEFORE_CHECKPOINT) -> list[Any]:
    """`[seq, tag]` of the tagged units among the `limit` retained records up to `seq`."""
    tags: list[Any] = []
    if not seq:
        return tags
    try:
        stream = journal.records_since(max(journal.first_seq - 1, seq - limit, 0))
    except Error:  # no longer retained: nothing to read back
        return tags
    try:
        for found, record in stream:
            if found > seq:
                break
            if record[0] == "unit" and len(record) == 5:
                tags.append([found, record[3]])
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return tags


def save_tags(directory: str | os.PathLike[str], tags: list[Any]) -> None:
    """Keep the tags a replica got with a snapshot (the units the snapshot covers)."""
    path = os.path.join(directory, TAGS_FILE)
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        handle.write(encode_value(tags))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_tags(directory: str | os.PathLike[str]) -> list[Any]:
    try:
        with open(os.path.join(directory, TAGS_FILE), "rb") as handle:
            found = decode_value(handle.read(), MAX_REPLY_SIZE)
    except (FileNotFoundError, Error):
        return []
    return found if type(found) is list else []


__all__ = [
    "HISTORY_FILE",
    "REPLICA_FILE",
    "TAGS_FILE",
    "load_history",
    "write_small_file",
    "read_replica_state",
    "record_checksum",
    "load_tags",
    "tags_before",
    "save_tags",
]
