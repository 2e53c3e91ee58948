"""`db.watch(path, since=None)`: the change feed as an iterator, for every kind of database.

A `Watch` polls its database with ``watch`` requests (see `pyzdb.changefeed.watch_reply`) and turns
the effects each one returns into `Change`s through a `changes.Shadow` of the watched value.
The server holds no state for a watcher: the next poll names the seq the last one covered, so
a watch survives reconnects, server restarts and a move to another server of the same history
(`since=` the seq it had reached). A remote server holds a poll until there is news (long poll),
so an idle watch costs a round trip a second; the embedded database is polled every
`EMBEDDED_POLL` seconds.

Resuming: `Watch.seq` is the newest seq whose changes have all been yielded. Every change of one
journal record has that record's seq, so `since=watch.seq` (or `since=change.seq` once the last
change of a seq has been consumed) resumes with no gap and no repeat.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from pyzdb.api.changes import Change, Shadow, parse_path

#: Seconds between polls of an embedded database with nothing new.
EMBEDDED_POLL = 0.02

Fetch = Callable[[dict[str, Any]], Any]


class _Feed:
    """The bookkeeping shared by the sync and the asyncio watch."""

    def __init__(self, path: Any, since: int | None) -> None:
        self.path = parse_path(path)
        if since is not None and (type(since) is not int or since < 0):
            raise ValueError(f"since must be None or a seq >= 0, not {since!r}")
        self._since = since
        self._shadow: Shadow | None = None
        self._cursor = since
        #: Seq to resume from: every change up to it has been yielded.
        self.seq = since
        self._pending: collections.deque[tuple[Change, bool]] = collections.deque()

    def params(self) -> dict[str, Any]:
        if self._shadow is None and self._since is None:
            return {"path": list(self.path), "since": None}
        return {"path": list(self.path), "since": self._cursor, "base": self._shadow is None}

    def take(self, reply: dict[str, Any]) -> bool:
        """Digest one poll's reply; False when it brought nothing new."""
        if self._shadow is None:
            if not reply.get("base"):
                return False  # a replica not yet at `since`: ask again
            self._shadow = Shadow.of(self.path, reply["exists"], reply["value"])
            if self._since is None:
                self._cursor = self.seq = reply["seq"]
                value = self._shadow.get()
                self._pending.append(
                    (Change(reply["seq"], self.path, "initial", None, copy.deepcopy(value)), True)
                )
                return True
        for seq, effects in reply["records"]:
            changes: list[Change] = []
            for effect in effects:
                changes.extend(self._shadow.apply(seq, tuple(effect)))
            for index, change in enumerate(changes):
                self._pending.append((change, index == len(changes) - 1))
        moved = reply["seq"] != self._cursor
        self._cursor = reply["seq"]
        if not self._pending:
            self.seq = self._cursor
        return moved or bool(self._pending)

    def pop(self) -> Change | None:
        if not self._pending:
            return None
        change, last_of_seq = self._pending.popleft()
        if last_of_seq:
            # a change was taken, so `take` has set the cursor
            self.seq = change.seq if self._pending else max(change.seq, cast(int, self._cursor))
        return change


class Watch(_Feed):
    """`for change in db.watch("db['orders']"):` -- an endless iterator of `Change`s."""

    def __init__(self, fetch: Fetch, path: Any, since: int | None, poll: float = 0.0) -> None:
        super().__init__(path, since)
        self._fetch = fetch
        self._poll = poll

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> Change:
        while True:
            change = self.pop()
            if change is not None:
                return change
            if not self.take(self._fetch(self.params())) and self._poll:
                time.sleep(self._poll)


class AsyncWatch(_Feed):
    """`async for change in db.watch(...)`: the asyncio twin of `Watch`."""

    def __init__(
        self, fetch: Callable[[dict[str, Any]], Awaitable[Any]], path: Any, since: int | None
    ) -> None:
        super().__init__(path, since)
        self._fetch = fetch

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> Change:
        while True:
            change = self.pop()
            if change is not None:
                return change
            if not self.take(await self._fetch(self.params())):
                await asyncio.sleep(0)


__all__ = ["Watch", "AsyncWatch", "EMBEDDED_POLL"]
