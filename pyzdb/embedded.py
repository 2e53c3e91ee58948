"""`pyzdb.open(path)`: the engine in this process, behind the same interface as `pyzdb.connect`.

Threads of one process share one `Database` safely: a re-entrant lock serialises requests, as
the server's loop does for its clients, and `lock()`/`transaction()` hold it across requests.
Parameters are copied on the way in and results on the way out, so the caller never holds a
live piece of the tree and value semantics match the remote client exactly.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any, cast

from pyzdb.api.capture import Syntax
from pyzdb.api.proxy import DatabaseAPI
from pyzdb.api.watch import EMBEDDED_POLL, Watch
from pyzdb.changefeed import DEFAULT_RETAIN, visible_seq, watch_reply
from pyzdb.engine import Engine, EngineConfig, RecoveryReport
from pyzdb.errors import Error, LimitExceeded, LockTimeout, SecurityError
from pyzdb.info import RequestStats, engine_sections
from pyzdb.limits import ROOT_NAME
from pyzdb.plain import to_plain
from pyzdb.sandbox import Budget
from pyzdb.storage.durability import FsyncPolicy
from pyzdb.storage.endpoint import in_use_hint


class Database(DatabaseAPI):
    """An open data directory; see `pyzdb.open`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._mutex = threading.RLock()
        self._lock_depth = 0
        self._closed = False
        self._stats = RequestStats()

    @property
    def recovery(self) -> RecoveryReport:
        """What was found on disk when the directory was opened."""
        return self._engine.recovery

    def evaluate(
        self,
        write: bool,
        source: str,
        syntax: Syntax,
        params: dict[str, Any],
        root: str = ROOT_NAME,
    ) -> Any:
        """One request of the query model (see `pyzdb.api.proxy.QueryModel.evaluate`), run by
        the engine in this process."""
        params = to_plain(params)
        with self._mutex:
            self._check_open()
            try:
                value = self._engine.run(
                    source, write=write, syntax=syntax, params=params, root=root
                )
            except (SecurityError, LimitExceeded, SyntaxError):
                self._stats.record(b"", "refused")
                raise
            except Exception:
                self._stats.record(b"", "failed")
                raise
            self._stats.record(b"", "ok")
            return value

    def _check_open(self) -> None:
        if self._closed:
            raise Error("the database is closed")

    # -- undo, history, checkpoints --------------------------------------------------------------

    def undo(self) -> bool:
        """Take back the last committed unit (durably); False when there is nothing to undo."""
        with self._mutex:
            self._check_open()
            return self._engine.undo()

    def redo(self) -> bool:
        """Re-apply the last undone unit (durably); False when there is nothing to redo."""
        with self._mutex:
            self._check_open()
            return self._engine.redo()

    def history(self) -> list[dict[str, Any]]:
        """The undo units, oldest first, with their source labels and times."""
        with self._mutex:
            self._check_open()
            return self._engine.history()

    def info(self) -> dict[str, dict[str, Any]]:
        """The database's state in sections (see `pyzdb.info`): version, journal, tree..."""
        with self._mutex:
            self._check_open()
            sections = engine_sections(self._engine, "embedded", self._stats.started)
            sections["clients"] = self._stats.section()
            sections["clients"]["connected"] = 1
            journal = self._engine.journal
            sections["server"].update(
                {
                    "seq": journal.last_seq,
                    "durable_seq": journal.durable_seq,
                    "first_retained_seq": journal.first_seq,
                    "retain_journal": journal.retain,
                }
            )
            sections["replication"] = {"role": "embedded", "replicas": []}
            return sections

    def checkpoint(self) -> None:
        with self._mutex:
            self._check_open()
            self._engine.checkpoint()

    # -- locking ---------------------------------------------------------------------------------

    def lock(self, timeout: float | None = None) -> None:
        """Exclusive access for this thread until `unlock()`; the requests form one unit."""
        if not self._mutex.acquire(timeout=-1 if timeout is None else timeout):
            raise LockTimeout(f"the database lock was not free within {timeout} s")
        if self._lock_depth:
            self._mutex.release()
            raise Error("the database is already locked by this thread")
        try:
            self._check_open()
            self._engine.begin()
        except BaseException:
            self._mutex.release()
            raise
        self._lock_depth = 1

    def unlock(self) -> None:
        """Commit the locked requests as one unit and let other threads in."""
        self._release(self._engine.commit)

    def rollback(self) -> None:
        """Drop the locked requests and let other threads in."""
        self._release(self._engine.rollback)

    def _release(self, finish: Any) -> None:
        if not self._lock_depth:
            raise Error("the database is not locked")
        self._lock_depth = 0
        if not self._engine.in_transaction:  # a failed fsync rolled it back (lose_undurable)
            self._mutex.release()
            raise Error(f"the transaction was rolled back: {self._engine.journal.failure}")
        try:
            finish()
        finally:
            self._mutex.release()

    # -- the change feed ---------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The newest journal seq of the database."""
        return self._engine.last_seq

    def watch(self, path: Any, since: int | None = None) -> Watch:
        """Every change under `path` after `since`, in seq order (see `pyzdb.api.watch`)."""
        return Watch(self._watch_poll, path, since, poll=EMBEDDED_POLL)

    def _watch_poll(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._mutex:
            self._check_open()
            engine = self._engine
            reply = to_plain(watch_reply(engine, params, visible_seq(engine.journal)))
            return cast(dict[str, Any], reply)

    def close(self) -> None:
        """Roll back an open transaction, flush the journal and release the directory."""
        with self._mutex:
            if not self._closed:
                self._closed = True
                self._engine.close()


def open(  # shadows the builtin on purpose: `pyzdb.open` is the public name
    path: str | os.PathLike[str] = "./pyzdb-data",
    *,
    fsync: FsyncPolicy = "always",
    time_limit: float | None = None,
    undo_depth: int = 1000,
    budget: Budget | None = None,
    retain_journal: int = DEFAULT_RETAIN,
) -> Database:
    """Open (creating if needed) a data directory in this process; recovers it first.

    `retain_journal`: records kept readable after a checkpoint, for `watch(since=...)`.
    """
    budget = budget or Budget()
    if time_limit is not None:
        budget = dataclasses.replace(budget, time=time_limit)
    config = EngineConfig(fsync=fsync, budget=budget, undo_depth=undo_depth, retain=retain_journal)
    try:
        engine = Engine(path, config)
    except Error as exc:
        if "in use by another process" in str(exc):
            raise Error(f"{exc}; {in_use_hint(path)}") from None
        raise
    return Database(engine)


__all__ = ["Database", "open"]
