"""Per-client shares of what the server keeps for its clients: remembered replies, queue slots.

`server.ReplyCache` evicted the oldest reply overall when it was full, so one client that gets
large replies (or uses many sessions) pushed out everybody else's; a client whose write reply
was lost and then evicted ran the write again when it resent. `FairReplyCache` keeps the same
interface and bounds, and evicts from the *heaviest* session instead (most bytes remembered):
a client's large replies cost its own history first, and the small replies of the others stay.

`QueueShares` counts the lock-queue entries of each client, so that one client cannot fill
the queue that every client waits in.
"""

from __future__ import annotations

import collections
import heapq

#: Lock-queue entries one client (session, else peer identity) may have waiting at once.
QUEUE_PER_CLIENT = 64


class FairReplyCache:
    """The replies each session got recently, so a retried request is answered, not re-run.

    The interface and bounds of `server.ReplyCache` (`per_session` ids per session,
    `max_entries` and `max_bytes` overall); overflow is taken from the heaviest session, its
    oldest reply first (see the module docstring).
    """

    def __init__(self, per_session: int = 64, max_entries: int = 65536,
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        self.per_session = per_session
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._replies: dict[tuple[bytes, int], bytes] = {}
        self._sessions: dict[bytes, collections.deque[int]] = {}
        self._weight: dict[bytes, int] = {}  # bytes remembered per session
        self._bytes = 0
        #: (-bytes, session), possibly stale (too high): see `_heaviest`.
        self._heap: list[tuple[int, bytes]] = []

    def get(self, key: tuple[bytes, int]) -> bytes | None:
        return self._replies.get(key)

    def put(self, key: tuple[bytes, int], reply: bytes) -> None:
        if key in self._replies:  # the same request answered again: keep the first answer
            return
        session, request_id = key
        ids = self._sessions.get(session)
        if ids is None:
            ids = self._sessions[session] = collections.deque()
            self._weight[session] = 0
        elif len(ids) >= self.per_session:
            self._drop(session, ids.popleft())
        ids.append(request_id)
        self._replies[key] = reply
        self._bytes += len(reply)
        weight = self._weight[session] = self._weight[session] + len(reply)
        heapq.heappush(self._heap, (-weight, session))
        if len(self._heap) > 4 * len(self._weight) + 64:  # drop the stale entries
            self._heap = [(-w, s) for s, w in self._weight.items()]
            heapq.heapify(self._heap)
        while len(self._replies) > self.max_entries or self._bytes > self.max_bytes:
            heaviest = self._heaviest()
            self._drop(heaviest, self._sessions[heaviest].popleft())

    def _drop(self, session: bytes, request_id: int) -> None:
        size = len(self._replies.pop((session, request_id)))
        self._bytes -= size
        if self._sessions[session]:
            self._weight[session] -= size  # its heap entry is now too high: see _heaviest
        else:
            del self._sessions[session], self._weight[session]

    def _heaviest(self) -> bytes:
        """The session remembering the most bytes. Heap entries are pushed when a session
        grows; one that shrank since is found stale here and pushed again at its weight."""
        heap, weights = self._heap, self._weight
        while True:
            weight, session = heap[0]
            current = weights.get(session)
            if current == -weight:
                return session
            heapq.heappop(heap)
            if current is not None:
                heapq.heappush(heap, (-current, session))

    def session_bytes(self, session: bytes) -> int:
        """Bytes of the replies remembered for `session` (0 if none)."""
        return self._weight.get(session, 0)

    def __len__(self) -> int:
        return len(self._replies)


class QueueShares:
    """How many lock-queue entries each client has; `admit` says whether one more may wait."""

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
