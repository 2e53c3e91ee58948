"""The writes a failed fsync takes back: which journal records are not durable yet, and how to
revert the store's steps that made them.

A failed fsync is never retried (PostgreSQL's "fsyncgate": after Linux reports a writeback
error the page cache no longer tells what is on disk), so the journal cuts every record after
its newest durable one off its file (`Journal.lost_after`). Memory must then go back to the
same state, newest step first: a committed unit is discarded, an undo redone, a redo undone,
through the store's own undo records. That works while the steps are still on top of the
store's stacks, so the records are remembered only as deep as the undo history; a step that can
no longer be taken back leaves memory ahead of the journal (`stale`), and the owner refuses
every later request until the directory is opened again.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

from pyzdb.storage.journal import Journal
from pyzdb.storage.store import Store

log = logging.getLogger("pyzdb.engine")

__all__ = ["Writeback"]


class Writeback:
    """The store's steps whose journal records are not known durable, oldest first."""

    def __init__(self, store: Store, journal: Journal, depth: int) -> None:
        self._store = store
        self._journal = journal
        #: `(seq, kind, token)`: a step of `kind` ("unit", "undo", "redo") journalled at `seq`,
        #: `token` the unit it left on top of its stack (`Store.newest`).
        self._unsynced: collections.deque[tuple[int, str, object]] = collections.deque(maxlen=depth)
        #: Why memory no longer matches the journal (it could not all be taken back), if so.
        self.stale: str | None = None

    def append(self, record: Any, sync: bool, kind: str, revert: Callable[[], Any]) -> None:
        """Append the record of the step `kind` the store just took, or take it back.

        Memory must match the journal: a record that was never written is reverted at once
        (`revert`); one written whose fsync then failed is lost with every other record that
        was not durable (`lose`). Until it is durable, the record is remembered. One durable on
        return (`--fsync always` with `sync`) is not: a later failed fsync cuts the journal
        back to its newest durable record, never before it, so it can never be lost; the
        entries it made durable are dropped by the next append that remembers one.
        """
        journal = self._journal
        before = journal.last_seq
        try:
            seq = journal.append(record, sync=sync)
        except BaseException:
            if journal.last_seq > before:  # written, then its fsync failed
                self._unsynced.append((journal.last_seq, kind, self._store.newest(kind)))
            else:
                revert()
            raise
        durable = journal.durable_seq
        if seq > durable:
            unsynced = self._unsynced
            while unsynced and unsynced[0][0] <= durable:  # forget those that became durable
                unsynced.popleft()
            unsynced.append((seq, kind, self._store.newest(kind)))

    def pending(self) -> bool:
        """Did a failed fsync leave records in memory that the journal no longer has?"""
        lost_after = self._journal.lost_after
        return lost_after is not None and self.stale is None and self._journal.last_seq > lost_after

    def lose(self) -> bool:
        """Take the writes the journal lost out of memory, newest first; then end the journal at
        its newest durable record. Returns whether memory matches the journal. Idempotent."""
        if not self.pending():
            return self.stale is None
        journal = self._journal
        lost_after = journal.lost_after
        assert lost_after is not None  # pending() says so
        due, taken, unsynced = journal.last_seq - lost_after, 0, self._unsynced
        while unsynced and unsynced[-1][0] > lost_after:
            _, kind, token = unsynced.pop()
            if not self._take_back(kind, token):
                break
            taken += 1
        if taken != due:
            self.stale = (
                f"memory no longer matches the journal: {due - taken} of the {due} writes that "
                f"were not durable could not be taken back ({journal.failure})"
            )
            log.critical("%s; reopen the data directory", self.stale)
            return False
        journal.rewind()
        log.error("took %d write(s) that were not durable out of memory", taken)
        return True

    def _take_back(self, kind: str, token: object) -> bool:
        """Revert the newest step of `kind` whose `Store.newest` was `token`: a commit is
        discarded, an undo redone, a redo undone. False, changing nothing, when that unit is no
        longer on top of its stack (the bounded undo history let it go, or a later commit
        dropped the redo stack): then memory cannot be taken back to before the step.
        """
        store = self._store
        if token is None or store.newest(kind) is not token:
            return False
        if kind == "unit":
            store.discard_last()
        elif kind == "undo":
            store.redo()
        else:
            store.undo()
        return True
