"""How the mutators read their arguments: as dict and list do, with the same messages.

A query should read what plain Python says (``list indices must be integers or slices, not
str``), and the tree adds two rules of its own: a key is looked up only once it is known to be
safe to hash (a tuple nested deeper than the depth limit is not), and a too-deep tuple is not
put in a KeyError (its repr would recurse).
"""

from __future__ import annotations

import operator
from typing import Any

from pyzdb.errors import LimitExceeded
from pyzdb.limits import MAX_DEPTH, SCALAR_TYPES
from pyzdb.values import check_key

__all__ = ["findable", "list_index", "missing_key", "update_items"]


def missing_key(key: Any) -> KeyError:
    """The KeyError for an absent `key`; a too-deep tuple is not put in it (its repr recurses)."""
    if key.__class__ is tuple:
        try:
            check_key(key)
        except LimitExceeded:
            return KeyError(f"<a tuple nested deeper than {MAX_DEPTH} levels>")
        except TypeError:
            pass
    return KeyError(key)


def findable(key: Any) -> bool:
    """Whether `key` can be looked up in a tree dict without risk (never hashing a deep tuple)."""
    cls = key.__class__
    if cls in SCALAR_TYPES:
        return True
    if cls is tuple:
        try:
            check_key(key)
        except Exception:
            return False
        return True
    if issubclass(cls, (list, dict, set, bytearray)):
        raise TypeError(f"unhashable type: '{cls.__name__}'")
    return False


def list_index(index: Any, n: int, message: str) -> int:
    """`index` of a list of `n` items as list does it: negative from the end, else IndexError.

    >>> list_index(-1, 3, "list index out of range")
    2
    >>> list_index(True, 3, "list index out of range")  # a bool is an int, as in Python
    1
    """
    try:
        i = operator.index(index)
    except TypeError:
        raise TypeError(
            f"list indices must be integers or slices, not {type(index).__name__}"
        ) from None
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(message)
    return i


def update_items(other: Any, kwargs: dict[str, Any]) -> list[tuple[Any, Any]]:
    """The (key, value) pairs dict.update(other, **kwargs) would store, in order, unhashed."""
    if isinstance(other, dict):
        items = list(other.items())
    elif hasattr(other, "keys"):
        items = [(key, other[key]) for key in other.keys()]
    else:
        items = []
        for i, pair in enumerate(other):
            try:
                pair = tuple(pair)
            except TypeError:
                raise TypeError(
                    f"cannot convert dictionary update sequence element #{i} to a sequence"
                ) from None
            if len(pair) != 2:
                raise ValueError(
                    f"dictionary update sequence element #{i} has length {len(pair)}; 2 is required"
                )
            items.append(pair)
    items.extend(kwargs.items())
    return items
