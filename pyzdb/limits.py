"""Budget checks made around the sandbox rather than inside it.

The guards stop a request between Python-level steps. A single C call (a sort, a comparison,
building a set) runs to its end, and so does the store's own work after the query (detaching
or encoding the result, validating what it stored). When such a step is the last one, no guard
runs after it to notice the overrun. `late_overrun` is the engine's last look before it
commits: a request over its time budget is rolled back, whichever step overran.
`unreplayable` is recovery's error for a journal record that cannot be applied.
"""

from __future__ import annotations

from .errors import Error, LimitExceeded
from .guards import Budget


def late_overrun(budget: Budget) -> LimitExceeded:
    """The error of a request that finished, but after its time budget: it must not commit."""
    return LimitExceeded(
        f"query ran longer than its time budget of {budget.time} s (in its last step); "
        "its effects were undone", "time")




def unreplayable(directory: str, seq: int, exc: Exception) -> Error:
    """Recovery met a journal record it cannot apply: say which one and why, never skip it.

    Starting with the record left out would silently lose it and every later write that
    depends on it, so the operator decides, with the seq in hand.
    """
    return Error(
        f"cannot recover {directory}: journal record seq {seq} cannot be applied "
        f"({type(exc).__name__}: {exc}); the records before it are intact. Keep a copy of the "
        "data directory, then remove that record and the ones after it to start from seq "
        f"{seq - 1}")


__all__ = ["late_overrun", "unreplayable"]
