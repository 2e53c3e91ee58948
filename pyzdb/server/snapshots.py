"""Snapshots for replicas: the whole tree, encoded once and sent in chunks.

A replica that is new or must start over asks for a snapshot (``snapshot`` with no token):
the primary encodes its tree at the current seq once, with the journalled results of the
units it covers (for exactly-once, `pyzdb.storage.history`), keeps it under a token for
`SNAPSHOT_TTL` seconds, and answers each ask with the chunk at ``offset``. At most `SNAPSHOTS`
are kept at once, so replicas starting over together cost bounded memory.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pyzdb.codec import encode_value
from pyzdb.engine import Engine
from pyzdb.errors import Error, ProtocolError
from pyzdb.net.messages import Request
from pyzdb.storage.history import tags_before

#: Bytes of a snapshot one reply carries.
SNAPSHOT_CHUNK = 4 * 1024 * 1024
#: Bytes of journalled results a snapshot carries for exactly-once (see `pyzdb.storage.history`).
SNAPSHOT_TAG_BYTES = 16 * 1024 * 1024
#: Seconds a snapshot stays in memory for the replica fetching it; at most `SNAPSHOTS` at once.
SNAPSHOT_TTL = 120.0
SNAPSHOTS = 2


class Snapshots:
    """The ``snapshot`` op of a primary (`history`: its history id; None on a replica)."""

    def __init__(self, engine: Engine, history: str | None) -> None:
        self._engine = engine
        self._history = history
        #: token -> (seq, encoded tree, monotonic time made, tags)
        self._kept: dict[str, tuple[int, bytes, float, list[Any]]] = {}

    def op(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        """One chunk of the snapshot named by ``token`` (None: take a new one)."""
        token, offset = params.get("token"), params.get("offset", 0)
        if not ((token is None or type(token) is str) and type(offset) is int and offset >= 0):
            raise ProtocolError("snapshot needs params token (str or None) and offset (int)")
        if self._history is None:
            raise Error("this server is a replica: take a snapshot from its primary")
        now = time.monotonic()
        for old in [t for t, (_, _, made, _) in self._kept.items() if now - made > SNAPSHOT_TTL]:
            del self._kept[old]
        if token is None:
            token = self._take(now)
        found = self._kept.get(token)
        if found is None:
            raise Error("that snapshot expired: ask for a new one")
        seq, data, _, tags = found
        chunk = data[offset : offset + SNAPSHOT_CHUNK]
        if offset + len(chunk) >= len(data):
            self._kept.pop(token, None)
        return {
            "token": token,
            "seq": seq,
            "size": len(data),
            "history": self._history,
            "chunk": chunk,
            "tags": tags if offset == 0 else [],
        }

    def _take(self, now: float) -> str:
        """Encode the tree as of now under a new token (the oldest kept one goes if full)."""
        engine = self._engine
        if engine.in_transaction:
            raise Error("the database is locked: ask for the snapshot again")
        while len(self._kept) >= SNAPSHOTS:
            del self._kept[next(iter(self._kept))]
        token = uuid.uuid4().hex
        data = encode_value(engine.store.snapshot())
        tags, room = tags_before(engine.journal, engine.last_seq), SNAPSHOT_TAG_BYTES
        for entry in tags:  # results beyond the room: "applied, result not kept"
            room -= len(entry[1][2] or b"")
            if room < 0:
                entry[1] = (*entry[1][:2], None)
        self._kept[token] = (engine.last_seq, data, now, tags)
        return token


__all__ = ["SNAPSHOT_CHUNK", "Snapshots"]
