"""Per-client shares of what the server keeps for its clients: remembered replies, queue slots.

The server's reply cache used to evict the oldest reply overall when it was full, so one
client that gets large replies (or uses many sessions) pushed out everybody else's; a client
whose write reply was lost and then evicted ran the write again when it resent.
`FairReplyCache` (the server's `ReplyCache`) has the same bounds and evicts from the *heaviest*
session instead (most bytes remembered): a client's large replies cost its own history
first, and the small replies of the others stay.

`QueueShares` counts the lock-queue entries of each client, so that one client cannot fill
the queue that every client waits in.
"""

from __future__ import annotations

import collections
import heapq

#: Lock-queue entries one client (session, else peer identity) may have waiting at once.
QUEUE_PER_CLIENT = 64
#: Sessions with a single reply `FairReplyCache` looks past, at most, for one with more: with
#: many one-reply sessions (cheap to make) an eviction must stay cheap.
_SCAN = 8


class FairReplyCache:
    """The replies each session got recently, so a retried request is answered, not re-run.

    Bounded three ways: `per_session` ids per session, `max_entries` and `max_bytes` overall.
    A client waits for each reply before the next request (or has a few in flight), so the
    last few ids of a session are all a retry can name. Overflow is taken from the heaviest
    session, its oldest reply first (see the module docstring).

    >>> cache = FairReplyCache(per_session=2)
    >>> for request_id in (1, 2, 3):
    ...     cache.put((b"session", request_id), b"reply")
    >>> cache.get((b"session", 1)), cache.get((b"session", 3))
    (None, b'reply')
    """

    def __init__(
        self, per_session: int = 64, max_entries: int = 65536, max_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self.per_session = per_session
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._replies: dict[tuple[bytes, int], bytes] = {}
        self._sessions: dict[bytes, collections.deque[int]] = {}
        self._weight: dict[bytes, int] = {}  # bytes remembered per session
        self._bytes = 0
        #: (-bytes, session), possibly stale: see `_heaviest`. Every session has an entry at
        #: `_pushed[session]` >= its weight; a put pushes only past that.
        self._heap: list[tuple[int, bytes]] = []
        self._pushed: dict[bytes, int] = {}

    def get(self, key: tuple[bytes, int]) -> bytes | None:
        return self._replies.get(key)

    def put(self, key: tuple[bytes, int], reply: bytes) -> None:
        replies = self._replies
        if key in replies:  # the same request answered again: keep the first answer
            return
        session, request_id = key
        ids = self._sessions.get(session)
        if ids is None:
            ids = self._sessions[session] = collections.deque()
            weight = 0
        else:
            weight = self._weight[session]
            if len(ids) >= self.per_session:
                gone = len(replies.pop((session, ids.popleft())))
                weight -= gone
                self._bytes -= gone
        ids.append(request_id)
        replies[key] = reply
        size = len(reply)
        self._bytes += size
        weight += size
        self._weight[session] = weight
        if weight > self._pushed.get(session, -1):  # the heap must hold it at least this high
            self._pushed[session] = weight
            heapq.heappush(self._heap, (-weight, session))
            if len(self._heap) > 4 * len(self._weight) + 64:  # drop the stale entries
                self._heap = [(-w, s) for s, w in self._weight.items()]
                heapq.heapify(self._heap)
                self._pushed = dict(self._weight)
        self._evict(session)

    def _evict(self, newest: bytes) -> None:
        """Drop replies, heaviest session first (`_heaviest`), until within both caps."""
        while self._replies and (
            len(self._replies) > self.max_entries or self._bytes > self.max_bytes
        ):
            victim = self._heaviest(newest)
            self._drop(victim, self._sessions[victim].popleft())

    def _drop(self, session: bytes, request_id: int) -> None:
        size = len(self._replies.pop((session, request_id)))
        self._bytes -= size
        if self._sessions[session]:
            self._weight[session] -= size  # its heap entry is now too high: see _heaviest
        else:
            del self._sessions[session], self._weight[session], self._pushed[session]

    def _heaviest(self, newest: bytes) -> bytes:
        """The session to evict from: the one remembering the most bytes among those with
        more than one reply, so that every session keeps its last reply (the one a resend
        names) while any other can go; failing that (or past the `_SCAN` heaviest), the
        heaviest other than `newest` (the session just answered), and `newest` itself last.

        Heap entries are pushed when a session grows past its highest entry; a stale entry
        (the session shrank, or was pushed higher since) is dropped here, and a session's
        highest one is replaced by one at its weight.
        """
        heap, weights, sessions = self._heap, self._weight, self._sessions
        singles: list[tuple[int, bytes]] = []
        try:
            while heap and len(singles) < _SCAN:
                weight, session = heapq.heappop(heap)
                current = weights.get(session)
                if current != -weight:
                    if current is not None and self._pushed[session] == -weight:
                        self._pushed[session] = current  # its highest entry, made exact
                        heapq.heappush(heap, (-current, session))
                    continue
                if len(sessions[session]) > 1:
                    heapq.heappush(heap, (weight, session))
                    return session
                singles.append((weight, session))
            for _, session in singles:
                if session != newest:
                    return session
            return newest
        finally:
            for entry in singles:
                heapq.heappush(heap, entry)

    def replace(self, replies: dict[int, bytes]) -> None:
        """Swap remembered replies for new ones, found by the `id()` of the old reply bytes
        (alive while the caller holds them): the error replies of writes a failed fsync undid.

        >>> cache, old = FairReplyCache(), b"ok"
        >>> cache.put((b"s", 1), old)
        >>> cache.replace({id(old): b"failed"})
        >>> cache.get((b"s", 1)), cache.session_bytes(b"s")
        (b'failed', 6)
        """
        for key, reply in list(self._replies.items()):
            new = replies.get(id(reply))
            if new is None:
                continue
            session, growth = key[0], len(new) - len(reply)
            self._replies[key] = new
            self._bytes += growth
            weight = self._weight[session] = self._weight[session] + growth
            if weight > self._pushed[session]:  # the heap must hold it at least this high
                self._pushed[session] = weight
                heapq.heappush(self._heap, (-weight, session))
        self._evict(b"")  # error replies are larger than the ones they replace

    def session_bytes(self, session: bytes) -> int:
        """Bytes of the replies remembered for `session` (0 if none)."""
        return self._weight.get(session, 0)

    def __len__(self) -> int:
        return len(self._replies)


class QueueShares:
    """How many lock-queue entries each client has; `admit` says whether one more may wait.

    >>> shares = QueueShares(per_client=1)
    >>> shares.admit(b"a"), shares.admit(b"a"), shares.admit(b"b")
    (True, False, True)
    """

    def __init__(self, per_client: int = QUEUE_PER_CLIENT) -> None:
        self.per_client = per_client
        self._counts: collections.Counter[bytes] = collections.Counter()

    def admit(self, client: bytes) -> bool:
        if self._counts[client] >= self.per_client:
            return False
        self._counts[client] += 1
        return True

    def release(self, client: bytes) -> None:
        left = self._counts[client] - 1
        if left > 0:
            self._counts[client] = left
        else:
            del self._counts[client]


__all__ = ["FairReplyCache", "QueueShares", "QUEUE_PER_CLIENT"]
