"""Durability before replies: the outbox holds each reply until the writes it may reflect are
on disk, and the sync thread overlaps the fdatasync with the loop's next messages.

Each reply joins the outbox with the journal seq it may reflect: the newest record when it was
made, for queries too (they may read a write of this very batch). Replies leave in order, each
once that seq is durable (`Journal.durable_seq`): no reply leaves before the writes it may
reflect are on disk, replies to queries included, so nobody sees data a crash could take back.
Under `--fsync always` one fdatasync covers every write so far (group commit). On a slow disk
(`OVERLAP_FSYNC`) the sync thread (`Syncer`) runs it while the loop goes on with the next
messages, and wakes the loop through a pipe in its poll set when it is done; on a fast disk the
loop runs it itself at the end of the turn, which costs less than the hand-off. Under
`everysec` and `no` the policy decides, and a turn's replies leave at its end.
"""

from __future__ import annotations

import collections
import logging
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any

from pyzdb.engine import Engine
from pyzdb.errors import Error
from pyzdb.net.errorinfo import error_to_info
from pyzdb.net.messages import Reply, pack
from pyzdb.server.wakeup import WakePipe

log = logging.getLogger("pyzdb.server")

#: An fdatasync slower than this (`Journal.fsync_seconds`: the shortest recent one) runs in the sync
#: thread while the loop evaluates the next messages; a faster one runs in the loop. A hand-off
#: costs two thread wake-ups and the batch the loop would have gathered meanwhile. Measured on
#: the reference machine (2 vCPUs, 8 clients; docs/performance.md): with the local disk's
#: 60-90 us fdatasync the loop is as fast or faster; at ~0.25 ms the two are even; at ~0.65 ms
#: and 2 ms the thread wins by 1.7x and 1.1-1.3x.
OVERLAP_FSYNC = 0.0003
_MAIN_THREAD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}

#: What the outbox sends with: (routing envelope, frame), never blocking.
Send = Callable[[list[bytes], bytes], None]


class Syncer:
    """The sync thread of `--fsync always`: fdatasyncs the journal while the loop works on.

    The loop asks for a seq with `want(seq)`; the thread calls `Journal.sync()`, which covers
    every record appended before the call (so usually more than asked, and appends go on
    meanwhile), then writes a byte to a pipe that the loop polls. The loop reads how far the
    disk got from `Journal.durable_seq`. A failure is kept in `error` and ends the thread (an
    fsync is never retried): the loop then fails the replies still waiting (`Outbox.fail`).
    """

    def __init__(self, journal: Any) -> None:
        self._journal = journal
        self._wanted = 0  # highest seq asked for (loop thread only): asks strictly increase
        self._asks: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self._pipe = WakePipe()
        self._thread = threading.Thread(target=self._run, name="pyzdb-sync", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        """The pipe end the loop polls: readable after each sync (or failure)."""
        return self._pipe.fileno()

    def clear(self) -> None:
        """Empty the pipe (the loop thread, after the poll said it is readable)."""
        self._pipe.clear()

    def idle(self) -> bool:
        """No sync asked for is still running or queued (the loop thread)."""
        return self._wanted <= self._journal.durable_seq

    def want(self, seq: int) -> None:
        """Ask for the journal to be durable up to `seq` (the loop thread)."""
        if seq > self._wanted:
            self._wanted = seq
            self._asks.put(seq)

    def _run(self) -> None:
        # Process-directed signals (SIGINT, SIGTERM, the sandbox's SIGALRM) go to the main
        # thread, as before this thread existed: there they interrupt what the loop waits on.
        signal.pthread_sigmask(signal.SIG_BLOCK, _MAIN_THREAD_SIGNALS)
        journal, asks = self._journal, self._asks
        while True:
            seq = asks.get()
            if seq is None:
                return
            if journal.durable_seq >= seq:  # an earlier sync covered it, and woke the loop
                continue
            try:
                journal.sync()
            except BaseException as exc:  # kept for the loop, which fails the replies
                self.error = exc
                self._pipe.notify()
                return
            self._pipe.notify()

    def stop(self) -> None:
        """End the thread once the syncs asked for so far are done; close the pipe."""
        self._asks.put(None)
        self._thread.join()
        self._pipe.close()


#: Called once when the journal could not make writes durable, with the replies that became
#: errors (`id()` of the old frame -> the error frame) and whether memory matches the journal.
OnFailure = Callable[[dict[int, bytes], bool], None]


class Outbox:
    """The replies waiting for the disk, in order: (seq it may reflect, envelope, id, frame).

    `on_failure` is called when the journal could not make writes durable (see `fail`).
    """

    def __init__(self, engine: Engine, send: Send, on_failure: OnFailure) -> None:
        self._engine = engine
        self._journal = engine.journal
        self._send = send
        self._on_failure = on_failure
        #: The failure `fail` handled: from then on nothing is synced here.
        self.failure: BaseException | None = None
        self._pending: collections.deque[tuple[int, list[bytes], int, bytes]] = collections.deque()
        #: Queue a reply until the journal is durable up to its seq: `hold((seq, envelope,
        #: request id, frame))`, the deque's own `append` (it runs for every reply).
        self.hold = self._pending.append
        self._checked_seq = engine.last_seq  # the policy's sync() was called up to here
        #: The sync thread (`--fsync always` only, from `start_sync_thread`).
        self.syncer: Syncer | None = None
        #: `--front`: told the durable seq before replies that may reflect it leave (the
        #: supervisor's page: reads the front sends elsewhere must see every acknowledged write).
        self.acknowledge: Callable[[int], None] | None = None

    def start_sync_thread(self) -> None:
        """Under `--fsync always`: fdatasyncs go to the sync thread when the disk is slow."""
        self.syncer = Syncer(self._journal)

    def __len__(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Send the replies whose writes are durable; ask the sync thread for the rest."""
        outbox = self._pending
        syncer = self.syncer if self.failure is None else None
        if syncer is None:
            # everysec / no (or shutting down): one sync() call for the turn's writes, which
            # under `always` fsyncs here and otherwise only checks that the journal still works.
            last = self._engine.last_seq
            if last != self._checked_seq:
                try:
                    self._engine.sync()
                except Exception as exc:
                    self.fail(exc)
                    return
                self._checked_seq = last
            durable = last
        else:
            if syncer.error is not None:
                self.fail(syncer.error)
                return
            durable = self._journal.durable_seq
            if (
                outbox[-1][0] > durable
                and syncer.idle()
                and self._journal.fsync_seconds < OVERLAP_FSYNC
            ):
                # A fast disk: the fdatasync here costs less than handing it to the thread
                # (two thread wake-ups), and the batch it delays grows the next group.
                try:
                    self._engine.sync()
                except Exception as exc:
                    self.fail(exc)
                    return
                durable = self._journal.durable_seq
        if self.acknowledge is not None and outbox and outbox[0][0] <= durable:
            self.acknowledge(durable)
        send = self._send
        while outbox and outbox[0][0] <= durable:
            _, envelope, _, data = outbox.popleft()
            send(envelope, data)
        if outbox and syncer is not None:
            syncer.want(self._engine.last_seq)

    def fail(self, exc: BaseException) -> None:
        """The journal could not make writes durable: nobody may be told they are.

        The fsync is never retried (PostgreSQL's "fsyncgate": after a writeback error the page
        cache no longer tells what is on disk). The journal cut the records that were not
        durable off its file; here the engine takes them out of memory (`lose_undurable`),
        every reply still waiting for the disk becomes an error (those already durable go out
        as they are), and the server goes on serving reads while the journal refuses writes.
        """
        if self.failure is None:
            log.critical(
                "journal sync failed: the writes that were not durable are undone, and writes "
                "are refused until the server is restarted: %s",
                exc,
            )
            self.failure = exc
        matched = self._engine.lose_undurable()
        self._checked_seq = self._engine.last_seq
        info = error_to_info(
            Error(
                f"the server could not make writes durable ({exc}): this request's writes, or "
                "the writes it read, were undone; writes are refused until the server is "
                "restarted"
            )
        )
        durable = self._journal.durable_seq
        if self.acknowledge is not None:
            self.acknowledge(durable)
        outbox, self._pending = self._pending, collections.deque()
        self.hold = self._pending.append
        replaced: dict[int, bytes] = {}
        for needs, envelope, request_id, data in outbox:
            if needs > durable:
                error = pack(Reply(request_id, False, None, durable, info))
                replaced[id(data)] = error
                data = error
            self._send(envelope, data)
        self._on_failure(replaced, matched)

    def close(self) -> None:
        """Stop the sync thread, then send the replies still waiting (once durable)."""
        syncer, self.syncer = self.syncer, None
        if syncer is not None:
            syncer.stop()
        if self._pending:
            if syncer is not None and syncer.error is not None and self.failure is None:
                self.fail(syncer.error)
            else:
                self.flush()  # without the sync thread: one sync here, then every reply


__all__ = ["OVERLAP_FSYNC", "OnFailure", "Outbox", "Syncer"]
