"""How many containers one mutation may copy into the tree, and the refusal past that.

The tree never holds a container twice, so a value that shares one (``a = [a, a]`` forty times:
41 objects) is copied once per reference, 2**41 containers. Adoption counts the containers it
creates against one `Room` per mutation, shared by all of that mutation's values.
"""

from __future__ import annotations

from typing import Any

from pyzdb.errors import LimitExceeded
from pyzdb.values import describe

__all__ = ["MAX_ADOPT_NODES", "Room", "too_many"]

#: Most containers one mutation may copy into the tree; past this bound the mutation is refused
#: (``budget="size"``). About 1 GB of tracked dicts, beyond any single write a 1 GiB memory
#: budget allows.
MAX_ADOPT_NODES = 10_000_000


class Room:
    """How many containers the copies of one mutation may still create (`MAX_ADOPT_NODES`).

    >>> Room().left == MAX_ADOPT_NODES
    True
    """

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_ADOPT_NODES


def too_many(where: tuple[Any, ...] | None) -> LimitExceeded:
    """The refusal of a copy that needs more than `MAX_ADOPT_NODES` containers."""
    return LimitExceeded(
        f"cannot store the value at {describe(where)}: its copy needs more than "
        f"{MAX_ADOPT_NODES:,} containers (the tree holds no container twice, so one that the "
        "value refers to k times is copied k times)",
        budget="size",
    )
