"""What the server remembers per session: the replies it sent (at-most-once) and the requests
the supervisor quarantined.

A repeat of a `(session, id)` already answered gets the remembered reply: the client's
lazy-pirate retry resends the same id, and a write must not run twice. The reply cache lives
in memory (`pyzdb.server.fairness.FairReplyCache`), and `seed_reply_cache` seeds it at start
from the `(session, request id, result)` journalled with each committed write (`make_tag`; the
files are `pyzdb.storage.history`'s): a write whose reply was lost *and* whose server then
crashed is answered from the journal when retried, not run again. A request that killed or
hung a worker is answered with the quarantine's error, never run again
(`pyzdb.server.supervisor`); so is the same text with the same parameters sent again under
another id or by another client, the way an application's retry loop would, which would
otherwise cost a restart each time.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pyzdb.codec import Encoded, encode_value
from pyzdb.engine import Engine
from pyzdb.errors import Error
from pyzdb.net.errorinfo import error_to_info
from pyzdb.net.messages import Reply, Request, pack, pack_value_reply
from pyzdb.server.fairness import FairReplyCache as ReplyCache
from pyzdb.storage.history import TAG_RESULT_LIMIT, load_tags, tags_before

#: Ops that neither write nor hold state: their replies are not worth remembering when large.
_READ_OPS = frozenset({"query", "history", "blob", "ping", "info"})
#: Ops whose replies are never remembered: pings and the stream ops, which a client repeats
#: with new arguments rather than retries (their replies would evict those of writes).
_UNCACHED = frozenset({"ping", "watch", "replicate", "snapshot", "info"})


class SessionMemory:
    """The reply cache, seeded from the journal, and the supervisor's quarantine."""

    def __init__(self, engine: Engine) -> None:
        self.cache = ReplyCache()
        seed_reply_cache(self.cache, engine)
        #: The reply already sent to a (session, id), if it is remembered. The cache's own
        #: `get`, not a method wrapping it: it runs for every request with a session.
        self.recall = self.cache.get
        #: (session, request id) -> `supervisor.Quarantined`: set by the supervised worker.
        self.quarantine: dict[tuple[bytes, int], Any] = {}
        #: (op, source) of a quarantined request -> [(root, syntax, digest of its params,
        #: its entry)]: empty unless a request stopped a worker (`learn`).
        self.killers: dict[tuple[str, str], list[tuple[str, str, bytes, Any]]] = {}

    def quarantined(self, key: tuple[bytes, int]) -> Error:
        """The error for a resend of a quarantined request (`key in quarantine`)."""
        return Error(self.quarantine[key].message())

    def learn(self, quarantine: dict[tuple[bytes, int], Any], max_message: int) -> None:
        """Take over the supervisor's quarantine, and index the frames it kept by content.

        The frames are decoded here, in the worker, with the bounds of any request: the
        supervisor's watch never parses what a client sent (with `--front` the front decodes
        requests while the worker is busy, with the same bounded decoder).
        """
        self.quarantine = quarantine
        for entry in quarantine.values():
            request = entry.request(max_message)
            if request is None:
                continue  # no frame kept (too large): (session, id) still applies
            self.killers.setdefault((request.op, request.source), []).append(
                (request.root, request.syntax, _digest(request.params), entry)
            )

    def killer(self, request: Request) -> Error | None:
        """The refusal of a request with the text and parameters of a quarantined one (call
        only when `killers` is not empty)."""
        known = self.killers.get((request.op, request.source))
        if not known:
            return None
        digest = _digest(request.params)
        for root, syntax, params, entry in known:
            if root == request.root and syntax == request.syntax and params == digest:
                return Error(
                    f"this {request.op} has the text and parameters of request "
                    f"{entry.request_id} of session {entry.session.hex() or '-'}, which "
                    f"{entry.reason}: it is refused without running (quarantined until "
                    "pyzdb-server is restarted)"
                )
        return None

    def remember(self, request: Request, data: bytes) -> None:
        """Keep a reply for a retry of `request`, unless it is not worth it (see above)."""
        if (
            request.session
            and request.op not in _UNCACHED
            and not (request.op in _READ_OPS and len(data) > self.cache.max_bytes // 64)
        ):
            self.cache.put((request.session, request.id), data)


def _digest(params: dict[str, Any]) -> bytes:
    return hashlib.blake2b(encode_value(params), digest_size=16).digest()


def seed_reply_cache(cache: Any, engine: Any) -> None:
    """Turn the tags of recovered units into cached replies (exactly-once across a crash).

    The units a checkpoint covers are read from the retained journal before it (the newest
    `TAGS_BEFORE_CHECKPOINT`), or, in a replica's directory, from the tags its snapshot came
    with: a checkpoint or snapshot between a write and a crash loses nothing.
    """
    replies: dict[tuple[bytes, int], bytes] = {}
    older = load_tags(engine.directory) + tags_before(
        engine.journal, engine.recovery.checkpoint_seq
    )
    recovered = [list(item) for item in engine.recovered_tags]
    for entry in older + recovered:
        if not (type(entry) is list and len(entry) == 2 and type(entry[0]) is int):
            continue
        seq, tag = entry
        if not (
            type(tag) in (tuple, list)
            and len(tag) == 3
            and type(tag[0]) is bytes
            and type(tag[1]) is int
            and type(tag[2]) in (bytes, type(None))
        ):
            continue
        session, request_id, data = tag
        if type(data) is bytes:
            reply = pack_value_reply(request_id, Encoded(data), seq)
        else:
            reply = pack(
                Reply(
                    request_id,
                    False,
                    None,
                    seq,
                    error_to_info(
                        Error(
                            "this request was applied before the server restarted, and its result "
                            "was too large to keep; it was not run again"
                        )
                    ),
                )
            )
        replies.pop((session, request_id), None)  # the newest outcome, in order
        replies[(session, request_id)] = reply
    for key, reply in replies.items():
        cache.put(key, reply)


def make_tag(request: Request) -> Any:
    """The `tag` callback the server passes to the engine for a request with a session."""
    if not request.session:
        return None

    def tag(value: Any) -> tuple[bytes, int, bytes | None]:
        data = value.data if type(value) is Encoded else encode_value(value)
        return (request.session, request.id, data if len(data) <= TAG_RESULT_LIMIT else None)

    return tag


__all__ = ["ReplyCache", "SessionMemory", "seed_reply_cache", "make_tag"]
