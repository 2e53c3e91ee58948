"""One pause of Python's cyclic garbage collector, shared by every bulk walk in the process.

Why pause: a walk that allocates a container per item (adopting a value into the tree,
freezing it for the journal, decoding a big frame or a batch of journal records) wakes the
collector every 700 allocations, and each collection rescans the whole growing tree: measured
2x slower on a 1,000,000-dict store, 3x on decoding a 100k-dict reply. Nothing such a walk makes
can form a cycle, so pausing only delays the next collection.

Why one pause: the GC switch is process-wide, so pauses must nest, within a thread (a walk
that calls another) and across threads (a decode while another thread adopts). The first pause
in turns the GC off, and the last one out turns it back on, and only if a pause turned it off:
a GC the application turned off stays off. Separate pausers got this wrong: one ending early
turned the GC back on under another still running.

`pause_gc`/`resume_gc` cost what a bare ``gc.disable()``/``gc.enable()`` pair does (no lock:
each is a few atomic C calls), and the one race they leave (a pause that begins while the last
one is ending may run with the GC back on) only costs speed, never leaves the GC off.

Imports nothing from pyzdb, so any layer may use it:

>>> import gc
>>> with gc_paused:
...     with gc_paused:
...         pass
...     gc.isenabled()  # the inner pause ended, the outer one still holds
False
>>> gc.isenabled()
True
"""

from __future__ import annotations

import gc

__all__ = ["gc_paused", "pause_gc", "resume_gc"]

#: One token per pause in progress, in any thread: ``append`` and ``pop`` are atomic.
_active: list[None] = []
#: Whether a pause turned the GC off (and so the last one out must turn it back on).
_turned_off = False


def pause_gc() -> None:
    """Begin a pause; end it with `resume_gc` in a ``finally`` (or use ``with gc_paused``).

    The pair is the form for walks that run once per stored container: a ``with`` costs
    twice as much as the two calls (two Python-level special methods).
    """
    global _turned_off
    _active.append(None)  # first, so that no pause ending meanwhile thinks it is the last
    if gc.isenabled():
        gc.disable()
        _turned_off = True


def resume_gc() -> None:
    """End a pause begun by `pause_gc`; the last one out turns the GC back on if a pause
    turned it off."""
    global _turned_off
    _active.pop()
    if not _active and _turned_off:
        _turned_off = False
        gc.enable()


class _GcPaused:
    """The context manager `gc_paused`: `pause_gc` on entry, `resume_gc` on exit."""

    __slots__ = ()

    def __enter__(self) -> None:
        pause_gc()

    def __exit__(self, *exc_info: object) -> None:
        resume_gc()


#: ``with gc_paused:`` runs a block with the cyclic GC paused; it holds no state, so one
#: instance serves every caller.
gc_paused = _GcPaused()
