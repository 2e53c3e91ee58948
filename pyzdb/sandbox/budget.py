"""The budget of a request, its accounts, the stop that ends it, and the tick that checks it.

A `Budget` states the limits; the `Accounts` of one evaluation (a mixin of
`pyzdb.sandbox.request.Request`) hold what is left of them and the sticky stop: once a guard
has failed the request, every later guard call raises the same error again. The time and
memory accounts are not charged by the guards but sampled by the tick (`Accounts.overrun`),
which `pyzdb.sandbox.timers` calls from SIGALRM or its watchdog thread.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from itertools import islice
from time import monotonic
from typing import TYPE_CHECKING, NoReturn

from pyzdb.errors import Error, LimitExceeded, SecurityError

if TYPE_CHECKING:
    from pyzdb.sandbox.request import Request


@dataclass(frozen=True)
class Budget:
    """Per-request limits; an overrun raises `LimitExceeded` with `budget` set to the field name.

    `max_size` bounds each object one operation builds: elements of a list/tuple/dict/set,
    characters of a str, bytes of a bytes, bits/8 of an int. `max_result` is enforced by the
    engine while it detaches the result (see `pyzdb.engine.Engine.detach`). `memory` bounds the
    growth of the process's resident memory during the request, sampled with the time budget
    (pure bytecode loops such as ``while True: t = (t,)`` allocate without calling a guard).
    `kill_after`, when set, ends the *process* that many seconds after the time budget if the
    evaluation is still stuck in one C call (see sandbox/README.md, residual risks): a server
    under a supervisor restarts, and the journal keeps every acknowledged write.

    >>> Budget(time=0.5).steps
    50000000
    """

    time: float = 5.0
    steps: int = 50_000_000
    max_size: int = 10_000_000
    max_result: int = 64 * 2**20
    memory: int = 2**30
    kill_after: float | None = None
    #: The process's resident size no request may push it past (`--max-memory`), or None.
    max_memory: int | None = None


class Stop(BaseException):  # a control-flow signal, not an error type
    """Ends a request: carries the pyzdb error to raise at the boundary.

    A BaseException so that ``except Exception`` in the query does not catch it.
    """

    def __init__(self, error: Error | None = None) -> None:
        super().__init__(error)
        self.error = error


class AsyncStop(Stop):
    """Raised in the evaluating thread by the watchdog; the reason is in `Request.error`."""


class Accounts:
    """What is left of one request's budget, and the pending stop (state set by `Request`)."""

    budget: Budget
    max_size: int
    max_bits: int
    #: Items of sized iterables still allowed (charged up front).
    steps_left: int
    #: The shared selector of lazy iteration: every item drawn anywhere advances it in C.
    lazy: islice[int]
    #: The pending stop: once set, every guard raises it again.
    error: Error | None
    deadline: float
    memory_base: int | None
    fired: bool  # the watchdog raised AsyncStop in the evaluating thread

    def fail(self, error: Error) -> NoReturn:
        """Stop the request with `error`, now and at every later guard call."""
        if self.error is None:
            self.error = error
        raise Stop(self.error)

    def refuse(self, message: str) -> NoReturn:
        self.fail(SecurityError(message))

    def too_big(self, what: str, size: int) -> NoReturn:
        self.fail(
            LimitExceeded(
                f"query would build {what} of size {size}, over the size budget of {self.max_size}",
                "size",
            )
        )

    def steps_exceeded(self) -> NoReturn:
        self.fail(
            LimitExceeded(
                f"query iterated over more than {self.budget.steps} items (steps budget)", "steps"
            )
        )

    def overrun(self) -> Error | None:
        """The tick (SIGALRM or the watchdog thread): has the time or memory budget run out?"""
        if self.error is None:
            if monotonic() >= self.deadline:
                self.error = LimitExceeded(
                    f"query ran longer than its time budget of {self.budget.time} s", "time"
                )
            elif self.memory_base is not None:
                resident = resident_memory()
                grown = resident - self.memory_base
                ceiling = self.budget.max_memory
                if ceiling is not None and resident > ceiling and grown > 0:
                    self.error = LimitExceeded(
                        f"MemoryError: query would take the server past its memory ceiling of "
                        f"{ceiling >> 20} MiB (--max-memory); its effects were undone",
                        "memory",
                    )
                elif grown > self.budget.memory:
                    self.error = LimitExceeded(
                        f"query grew the process by {grown >> 20} MiB, over its memory budget "
                        f"of {self.budget.memory >> 20} MiB",
                        "memory",
                    )
        return self.error


class _Current(threading.local):
    """The request the builtins of this thread charge (None outside an evaluation)."""

    request: Request | None = None


_current = _Current()


def activate(request: Request | None) -> Request | None:
    """Make `request` the one the builtins of this thread charge; returns the previous one.

    The builtins table is built once and shared (a query cannot reach it: ``__builtins__``
    is a refused name), so its functions find their request here, per thread.
    """
    previous = _current.request
    _current.request = request
    return previous


def current_request() -> Request:
    """The request the builtins of this thread charge (see `activate`)."""
    request = _current.request
    if request is None:  # a builtin of the table called outside `run`: a bug of the caller
        raise RuntimeError("no query is being evaluated in this thread")
    return request


_statm: tuple[int, int] | None = None  # (pid, fd) of /proc/self/statm, reopened after a fork


def resident_memory() -> int:
    """Resident set size of this process in bytes (Linux), or its peak elsewhere.

    >>> resident_memory() > 0
    True
    """
    global _statm
    pid = os.getpid()
    try:
        if _statm is None or _statm[0] != pid:
            _statm = (pid, os.open("/proc/self/statm", os.O_RDONLY))
        return int(os.pread(_statm[1], 64, 0).split()[1]) * _PAGE
    except OSError:
        import resource  # not on Windows; /proc is not there either

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return 4096


_PAGE = _page_size()


__all__ = [
    "Budget",
    "Stop",
    "AsyncStop",
    "Accounts",
    "activate",
    "current_request",
    "resident_memory",
]
