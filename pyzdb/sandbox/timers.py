"""The limits one evaluation runs under: recursion limit, the time/memory tick, the hard kill.

`Limits` arms them around an evaluation and disarms them after. The tick is SIGALRM in the
main thread (`_AlarmHandler`, installed once) and otherwise one watchdog thread (`_Watchdog`)
that raises asynchronously in the evaluating thread; either way it asks the request whether
its time or memory ran out (`pyzdb.sandbox.budget.Accounts.overrun`) and raises the stop only
in query or guard frames (`pyzdb.sandbox.request.GUARD_FILES`).
"""

from __future__ import annotations

import _signal as _signal_module  # the C functions: no enum conversion on the hot path
import ctypes
import faulthandler
import os
import signal
import sys
import threading
from time import monotonic
from types import FrameType, TracebackType
from typing import Any

from pyzdb.limits import QUERY_FILENAME
from pyzdb.sandbox.budget import AsyncStop, Stop, activate, resident_memory
from pyzdb.sandbox.request import GUARD_FILES, Request

#: Frames a query may add to the stack: deep recursion raises RecursionError, not a crash.
QUERY_FRAMES = 400
#: Seconds between two checks of the time and memory budgets.
TICK = 0.05


class Limits:
    """Arms and disarms everything one evaluation needs: recursion limit, tick, hard kill."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.active = False
        self.recursion = 0
        self.started = 0.0
        self.previous_handler: Any = None
        self.previous_timer = (0.0, 0.0)
        self.uses_signal = False
        self.previous_request: Request | None = None

    def __enter__(self) -> None:
        request, budget = self.request, self.request.budget
        self.started = monotonic()
        request.deadline = self.started + budget.time
        request.memory_base = _memory_baseline(self.started)
        if budget.kill_after is not None:  # first: it is the one step that can fail
            faulthandler.dump_traceback_later(budget.time + budget.kill_after, exit=True)
        self.previous_request = activate(request)
        self.recursion = sys.getrecursionlimit()
        sys.setrecursionlimit(_stack_depth() + QUERY_FRAMES)
        tick = max(min(TICK, budget.time / 4), 0.002)
        self.uses_signal = (
            hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        )
        self.active = True
        if self.uses_signal:
            self.previous_handler = _ALARM.arm(self)
            self.previous_timer = signal.setitimer(signal.ITIMER_REAL, tick, tick)
        else:
            _WATCHDOG.watch(request, threading.get_ident(), tick)

    def on_alarm(self, frame: Any) -> None:
        """SIGALRM: interrupts bytecode and big-int arithmetic; re-raises on every tick.

        Only in the query's own frames or the guards': a stop raised inside the store's code
        could land between a change and its undo record. Elsewhere the next tick tries again,
        and meanwhile every guard call raises the pending stop.
        """
        if self.active:
            error = self.request.overrun()
            if error is not None and _interruptible(frame):
                raise Stop(error)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # No stop can land in here: the tick raises only in query and guard frames.
        self.active = False
        if self.uses_signal:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            _let_signals_run()
            _ALARM.disarm(self.previous_handler)
            delay, interval = self.previous_timer
            if delay:
                remaining = max(delay - (monotonic() - self.started), 0.001)
                signal.setitimer(signal.ITIMER_REAL, remaining, interval)
        else:
            _WATCHDOG.release(self.request)
        if self.request.budget.kill_after is not None:
            faulthandler.cancel_dump_traceback_later()
        sys.setrecursionlimit(self.recursion)
        activate(self.previous_request)


class _AlarmHandler:
    """The SIGALRM handler, installed once and left in place while nobody else wants SIGALRM.

    Swapping handlers around every request cost more than a small query (`signal.signal`
    converts enums in Python, twice a request). So the handler stays installed and forwards to
    the evaluation in progress; only when the host program has its own SIGALRM handler is
    that handler swapped out for the request and put back after it.
    """

    def __init__(self) -> None:
        self.current: Limits | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.current is not None:
            self.current.on_alarm(frame)

    def arm(self, limits: Limits) -> Any:
        """Route SIGALRM to `limits`; returns the handler to restore afterwards (or None)."""
        self.current = limits
        installed = _signal_module.getsignal(signal.SIGALRM)
        if installed is self:
            return None
        _signal_module.signal(signal.SIGALRM, self)
        return None if installed in (signal.SIG_DFL, signal.SIG_IGN, None) else installed

    def disarm(self, previous: Any) -> None:
        self.current = None
        if previous is not None:
            signal.signal(signal.SIGALRM, previous)


_ALARM = _AlarmHandler()

#: Seconds a reading of the process's resident size serves as the baseline of the memory
#: budget: reading /proc costs more than a small query, and the baseline moves slowly.
MEMORY_BASELINE_AGE = 1.0
_baseline = (float("-inf"), 0)


def _memory_baseline(now: float) -> int:
    global _baseline
    if now - _baseline[0] > MEMORY_BASELINE_AGE:
        _baseline = (now, resident_memory())
    return _baseline[1]


def _interruptible(frame: Any) -> bool:
    """Whether a stop may be raised in `frame`: query code, or a guard's own state only."""
    return frame is not None and frame.f_code.co_filename in _INTERRUPTIBLE


#: Query code and the guards' own: see `pyzdb.sandbox.request.GUARD_FILES`.
_INTERRUPTIBLE = GUARD_FILES | {QUERY_FILENAME}


def _let_signals_run() -> None:
    """A Python call: CPython runs pending signal handlers at function entry, so a SIGALRM
    that arrived just before the timer stopped reaches our (now inactive) handler, not the
    previous one after it is restored."""


def _stack_depth() -> int:
    frame: FrameType | None = sys._getframe()
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth


class _Watchdog:
    """One daemon thread that ticks the requests evaluated outside the main thread.

    On an overrun it raises `AsyncStop` in the evaluating thread
    (``PyThreadState_SetAsyncExc``), again at every tick until the request is released.
    Release clears an exception still pending, under the same lock, so none can land in the
    caller after `run` returns. The exception is set only while the thread's current frame is
    query or guard code: a thread waiting for the GIL resumes in that very frame and raises
    there first. An asynchronous exception interrupts bytecode only: big-int arithmetic runs
    to its end (see sandbox/README.md, residual risks).
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._watched: dict[Request, int] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._tick = TICK
        api = ctypes.pythonapi
        self._raise = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
            ("PyThreadState_SetAsyncExc", api)
        )
        self._clear = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
            ("PyThreadState_SetAsyncExc", api)
        )

    def watch(self, request: Request, ident: int, tick: float) -> None:
        with self._lock:
            self._watched[request] = ident
            self._tick = min(self._tick, tick) if len(self._watched) > 1 else tick
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._loop, name="pyzdb-watchdog", daemon=True
                )
                self._thread.start()
            self._lock.notify()

    def release(self, request: Request) -> None:
        with self._lock:
            ident = self._watched.pop(request, None)
            if ident is not None and request.fired:
                self._clear(ident, None)

    def _loop(self) -> None:
        with self._lock:
            while True:
                while not self._watched:
                    self._lock.wait()
                frames = sys._current_frames()
                for request, ident in list(self._watched.items()):
                    if request.overrun() is not None and _interruptible(frames.get(ident)):
                        request.fired = True
                        self._raise(ident, AsyncStop)
                del frames
                self._lock.wait(self._tick)


_WATCHDOG = _Watchdog()


__all__ = ["QUERY_FRAMES", "TICK", "MEMORY_BASELINE_AGE", "Limits"]
