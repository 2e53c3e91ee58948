"""The engine: evaluate one request inside a transaction on the store, then make it durable.

Theory of operation (one request):

    received -> compiled (cached by source) -> evaluated inside a unit of the store
             -> committed: effects appended to the journal (fsynced by policy) -> result detached
             -> or rolled back: every effect of the request undone, the error re-raised

A *unit* is what `undo()` takes back: one request, or every request of an explicit transaction
(`begin()` ... `commit()`). Inside a transaction each request runs under a savepoint, so a
failed request changes nothing while the transaction's earlier requests stay.

The engine knows nothing about sockets or threads: its caller (the embedded `Database`, the
server loop) serialises calls. Journal records are plain tuples:
`("unit", label, time, effects)` or, with a tag, `("unit", label, time, tag, effects)`,
`("undo", effects)`, `("redo", effects)`: the effects are always last.
"""

from __future__ import annotations

import collections
import gc
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pyzdb import sandbox
from pyzdb.api.capture import Syntax
from pyzdb.api.labels import spell
from pyzdb.codec import decode_value, encode_wire, measure
from pyzdb.errors import Error, LimitExceeded, ProtocolError
from pyzdb.limits import ROOT_NAME
from pyzdb.plain import to_plain
from pyzdb.scope import resolve as resolve_scope
from pyzdb.storage.durability import FsyncPolicy
from pyzdb.storage.files import fsync_directory
from pyzdb.storage.journal import Journal
from pyzdb.storage.scan import unreplayable
from pyzdb.storage.store import Store
from pyzdb.storage.undurable import Writeback
from pyzdb.values import File

log = logging.getLogger("pyzdb.engine")

#: Longest label kept in the undo history for one unit; labels are for people, not replay.
LABEL_CHARS = 200
#: Tagged units whose tags recovery keeps (`Engine.recovered_tags`), newest last.
TAGS_KEPT = 65536
#: The youngest generation's GC threshold while a request runs (CPython's default is 700): a
#: young collection scans only what was allocated since the last one, and a rarer one means
#: rarer collections of the older generations, which walk the whole tree. Measured on 100,000
#: records, building them and updating each: 3.6 s at 700, 2.4 s at 100,000, 1.9 s with the GC
#: off (which a million matches for requests of that size). Still finite, so cyclic garbage a
#: query makes in a loop is collected every million objects.
REQUEST_GC_THRESHOLD = 1_000_000


@dataclass
class RecoveryReport:
    """What `Engine` found on disk when it opened the directory (logged by the server)."""

    checkpoint_seq: int = 0
    records_replayed: int = 0
    effects_replayed: int = 0
    seconds: float = 0.0


@dataclass
class EngineConfig:
    """Knobs of one engine; the defaults are the ones the README promises."""

    fsync: FsyncPolicy = "always"
    budget: sandbox.Budget = field(default_factory=sandbox.Budget)
    undo_depth: int = 1000
    #: Records kept readable after a checkpoint, for change feeds and replicas (`Journal.retain`).
    retain: int = 0


def late_overrun(budget: sandbox.Budget) -> LimitExceeded:
    """The error of a request that finished, but after its time budget: it must not commit."""
    return LimitExceeded(
        f"query ran longer than its time budget of {budget.time} s (in its last step); "
        "its effects were undone",
        "time",
    )


class Engine:
    """One data directory opened for evaluation: store + sandbox + journal."""

    def __init__(self, directory: str | os.PathLike[str], config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        self.directory = Path(directory)
        self.blob_dir = self.directory / "blobs"
        self.journal = Journal(self.directory, fsync=self.config.fsync, retain=self.config.retain)
        #: `(seq, tag)` of the newest tagged units replayed by recovery (see `run`'s `tag`).
        self.recovered_tags: collections.deque[tuple[int, Any]] = collections.deque(
            maxlen=TAGS_KEPT
        )
        try:
            self.store, self.recovery = _recover(
                self.journal, self.config.undo_depth, self._store_blob, self.recovered_tags
            )
        except BaseException:
            self.journal.close()
            raise
        self._in_transaction = False
        #: The journal records not yet known durable, and taking them back after a failed fsync.
        self._writeback = Writeback(self.store, self.journal, self.config.undo_depth)

    # -- requests ----------------------------------------------------------------------------

    def run(
        self,
        source: str,
        *,
        write: bool,
        syntax: Syntax = "eval",
        params: dict[str, Any] | None = None,
        root: str = ROOT_NAME,
        sync: bool = True,
        finish: Callable[[Any], Any] | None = None,
        tag: Callable[[Any], Any] | None = None,
        scope: tuple[Any, ...] | None = None,
        budget: sandbox.Budget | None = None,
        label: str | None = None,
    ) -> Any:
        """Evaluate `source`; `write=False` is a query (any mutation raises SecurityError).

        The result goes through `finish` *before* the unit commits, so a result that is not
        data, or too large, fails the request and changes nothing. The default detaches it as
        plain Python values; the server passes its wire encoder instead (one pass, no copy).
        With `sync=False` a committed write is appended to the journal but not fsynced: the
        caller must call `sync()` before acknowledging it (group commit).
        `tag(value)`, if given, makes plain data journalled with a unit that writes (the
        server's session, request id and reply: a retry after a crash is answered from it).
        A scoped key's request passes `scope` (its root name is then bound to that subtree,
        `pyzdb.scope`), its own `budget`, and a `label` that names its key in the history.
        """
        if self.journal.lost_after is not None and not self.lose_undurable():
            # memory a failed fsync left ahead of the journal is never served
            raise Error(f"the data directory must be opened again: {self._writeback.stale}")
        names = dict(params or {})
        names[root] = self.store.root if scope is None else resolve_scope(self.store.root, scope)
        compiled = sandbox.compile_request(source, syntax, names)
        store = self.store
        mark = store.savepoint() if self._in_transaction else None
        if mark is None:
            store.begin()
        store.writable = write
        # A rarer cyclic GC during a request: with the default threshold (700), a query that
        # builds 100,000 records sets off collections that walk the whole tree again and again
        # (2-4x its own time). Young collections still run every `REQUEST_GC_THRESHOLD`
        # allocations, so a query making cyclic garbage in a loop stays bounded in memory.
        thresholds = gc.get_threshold()
        gc.set_threshold(REQUEST_GC_THRESHOLD, *thresholds[1:])
        budget = budget or self.config.budget
        started = time.monotonic()
        try:
            value = (finish or self.detach)(sandbox.run(compiled, names, budget))
            if time.monotonic() - started > budget.time:
                raise late_overrun(budget)
        except BaseException:
            store.writable = False
            if mark is None:
                store.rollback()
            else:
                store.rollback_to(mark)
            gc.set_threshold(*thresholds)
            raise
        store.writable = False
        try:
            if mark is None:
                if label is None:
                    label = spell(source, params) if write else source
                self._commit_unit(label, sync, None if tag is None else lambda: tag(value))
        finally:
            gc.set_threshold(*thresholds)
        return value

    def _commit_unit(self, label: str, sync: bool, tag: Callable[[], Any] | None = None) -> None:
        effects = self.store.commit(label[:LABEL_CHARS])
        if effects:
            record: tuple[Any, ...] = ("unit", label[:LABEL_CHARS], time.time(), effects)
            if tag is not None:
                record = (*record[:3], tag(), effects)
            self._journal(record, sync, "unit", self.store.discard_last)

    def detach(self, value: Any) -> Any:
        """A query result as plain values owned by the caller, within the result budget.

        The budget counts the result as the wire would carry it (`codec.expanded_size`: every
        reference to a shared container in full), so an embedded database refuses the same
        results as a server, and a result bomb (``[[big] * 1000] * 1000``) is refused before
        anything is copied. A result that is already plain (the usual fresh list the query
        built, such as a comprehension's) is returned as it is: no tree container is in it and
        nothing else refers to it (`pyzdb.open`'s database passes params as copies), so a copy
        would only cost time.
        """
        limit = self.config.budget.max_result
        found = measure(value, limit)
        if found.size > limit:
            raise LimitExceeded(
                f"query result is larger than the result budget of {limit} bytes", "result"
            )
        if found.plain:
            return value
        if found.files:
            return _map_files(to_plain(value), self._bind_file)
        return _detached_copy(value, found.native)

    def _bind_file(self, file: File) -> File:
        """Give a result's `File` a reader, so `f.read()` works in embedded mode."""
        return file.with_reader(self.read_blob)

    # -- transactions, undo, checkpoints ------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    def begin(self) -> None:
        """Open a transaction: the following requests form one unit until commit/rollback."""
        if self._in_transaction:
            raise Error("a transaction is already open")
        self.store.begin()
        self._in_transaction = True

    def commit(
        self, label: str = "transaction", sync: bool = True, tag: Callable[[], Any] | None = None
    ) -> None:
        if not self._in_transaction:
            raise Error("no transaction is open")
        self._in_transaction = False
        self._commit_unit(label, sync, tag)

    def rollback(self) -> None:
        if not self._in_transaction:
            raise Error("no transaction is open")
        self._in_transaction = False
        self.store.rollback()

    def undo(self, sync: bool = True) -> bool:
        """Take back the last committed unit; False when there is nothing to undo."""
        return self._step_history("undo", self.store.undo, sync)

    def redo(self, sync: bool = True) -> bool:
        """Re-apply the last undone unit; False when there is nothing to redo."""
        return self._step_history("redo", self.store.redo, sync)

    def _step_history(self, kind: str, step: Any, sync: bool) -> bool:
        if self._in_transaction:
            raise Error(f"cannot {kind} inside a transaction: commit or roll back first")
        effects = step()
        if effects is None:
            return False
        if effects:
            revert = self.store.redo if kind == "undo" else self.store.undo
            self._journal((kind, effects), sync, kind, revert)
        return True

    # -- journal failures ----------------------------------------------------------------------

    def _journal(self, record: Any, sync: bool, kind: str, revert: Callable[[], Any]) -> None:
        """Append the record of the step `kind` the store just took (see `Writeback.append`)."""
        try:
            self._writeback.append(record, sync, kind, revert)
        except BaseException:
            self.lose_undurable()
            raise

    def lose_undurable(self) -> bool:
        """After a failed fsync, take the writes the journal lost out of memory, newest first
        (`Writeback.lose`), an open transaction first. Returns whether memory now matches the
        journal; when not, every later request is refused until the directory is opened again.
        Idempotent; call it in the thread that runs requests.
        """
        if self._writeback.pending() and self._in_transaction:
            self.rollback()
        return self._writeback.lose()

    def history(self) -> list[dict[str, Any]]:
        return self.store.history()

    def checkpoint(self) -> None:
        """Write the whole tree to a new checkpoint file; the journal it covers is dropped."""
        if self._in_transaction:
            raise Error("cannot checkpoint inside a transaction: commit or roll back first")
        try:
            self.journal.checkpoint(self.store.snapshot())
        except BaseException:
            self.lose_undurable()
            raise

    def sync(self) -> None:
        """Make every write so far durable; after a failed fsync, take the lost ones back out
        of memory (`lose_undurable`) before raising."""
        try:
            self.journal.sync()
        except BaseException:
            self.lose_undurable()
            raise

    @property
    def last_seq(self) -> int:
        return self.journal.last_seq

    def close(self) -> None:
        if self._in_transaction:
            self.rollback()
        self.journal.close()

    # -- blobs -------------------------------------------------------------------------------

    def _store_blob(self, data: bytes) -> str:
        """Write a blob under its digest before the unit that refers to it commits."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.blob_dir / digest
        if not target.exists():
            self.blob_dir.mkdir(exist_ok=True)
            tmp = target.with_suffix(".tmp")
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
            fsync_directory(self.blob_dir)
        return digest

    def read_blob(self, digest: str) -> bytes:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise Error(f"not a blob digest: {digest!r}")
        try:
            return (self.blob_dir / digest).read_bytes()
        except FileNotFoundError:
            raise Error(f"blob {digest} is missing from the data directory") from None


def _recover(
    journal: Journal,
    undo_depth: int,
    blob_sink: Callable[[bytes], str],
    tags: collections.deque[tuple[int, Any]],
) -> tuple[Store, RecoveryReport]:
    """Load the checkpoint, replay the journal after it, then exempt the tree from the GC.

    The checkpoint payload is ours alone: `Store` consumes it while building the tree, so
    its memory is reused instead of fragmenting the heap. Afterwards `gc.freeze()` moves
    every object alive (the whole tree) to the permanent generation. The tree's containers
    are GC-tracked, so every full collection would otherwise walk all of them again (0.98 s
    measured for a tree of 1,000,000 dicts, 0 s frozen), and the GC cannot simply be
    turned off: each subtree a request removes is a reference cycle (its children's
    `_parent` points back at it) that only the collector frees. Those made from now on are
    still collected; a container of the recovered tree that is removed later is not (its
    cycle is frozen) until the next engine opened in this process: `gc.unfreeze()` and a
    full collection first reclaim what earlier freezes kept (a closed engine's tree is one
    cycle through `root._parent`), and keep garbage from being frozen with the tree.
    """
    started = time.perf_counter()
    checkpoint, records = journal.recover()
    tree = cast("dict[Any, Any] | None", checkpoint)  # the engine checkpoints its tree
    store = Store(tree, undo_depth=undo_depth, blob_sink=blob_sink)
    report = RecoveryReport(checkpoint_seq=journal.last_seq)  # before replay moves it
    for seq, record in cast("Iterator[tuple[int, tuple[Any, ...]]]", records):  # engine's format
        effects = record[-1]
        if len(record) == 5:
            tags.append((seq, record[3]))
        try:
            for effect in effects:
                store.apply(effect)
        except Exception as exc:
            raise unreplayable(journal.directory, seq, exc) from None
        report.records_replayed += 1
        report.effects_replayed += len(effects)
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    report.seconds = time.perf_counter() - started
    return store, report


def _detached_copy(value: Any, native: bool) -> Any:
    """A plain deep copy of a result that holds tree containers, through the wire codec.

    msgpack writes the store's tracked containers and reads plain ones back, both in C, where
    `to_plain`'s walk takes a Python step per container (40x slower on a list of records). The
    copy is what a remote client gets: type for type, shared sub-values as separate copies (the
    measure before it bounded their expanded size). What the codec refuses (a generator, a
    cycle) goes to `to_plain`, for the error it raises, naming the type and where it sits.
    """
    try:
        data = encode_wire(value, native)
        return decode_value(data, len(data))
    except (TypeError, ValueError, ProtocolError):
        return to_plain(value)


def _map_files(value: Any, bind: Callable[[File], File]) -> Any:
    if isinstance(value, File):
        return bind(value)
    if isinstance(value, dict):
        return {key: _map_files(item, bind) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_files(item, bind) for item in value]
    if isinstance(value, tuple):
        return tuple(_map_files(item, bind) for item in value)
    if isinstance(value, (set, frozenset)):
        return type(value)(_map_files(item, bind) for item in value)
    return value


__all__ = ["Engine", "EngineConfig", "RecoveryReport"]
