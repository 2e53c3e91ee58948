"""The families of types the guards sort a query's values into, each stated once.

Plain sets of classes, tested by identity of the exact type (``type(x) in SIZED``): a query
cannot make classes, so the only subclasses it meets are the store's tracked containers, which
join `SIZED` on first sight (`sized_subclass`).
"""

from __future__ import annotations

from typing import Any

from pyzdb.errors import QUERY_EXCEPTIONS

#: The exception classes a query may name, raise and catch: the built-in `Exception` classes
#: that cross the wire by name (`pyzdb.errors.QUERY_EXCEPTIONS`, their one home). The
#: BaseException family (SystemExit, KeyboardInterrupt, GeneratorExit) is left out: raised in a
#: server they end the process; MemoryError is left out because it is a budget signal.
EXCEPTIONS: tuple[type[Exception], ...] = tuple(QUERY_EXCEPTIONS.values())
CATCHABLE = frozenset(EXCEPTIONS)

#: What ``*`` repeats and ``+`` concatenates: sizes the arithmetic guards price.
SEQUENCES = (str, bytes, list, tuple)
DICT_KEYS: type = type({}.keys())
DICT_VALUES: type = type({}.values())
#: Types whose len() is known and bounded; subclasses of list and dict join on first sight.
SIZED: set[type] = {list, tuple, str, bytes, dict, set, frozenset, range, DICT_KEYS, DICT_VALUES}
#: Numbers and None: immutable, and their text is short (an int's is priced by its bits).
NUMBERS_AND_NONE = frozenset({int, float, bool, type(None), complex})
#: Values an item assignment cannot change: writing to them is Python's TypeError, not a refusal.
IMMUTABLE = NUMBERS_AND_NONE | {str, bytes, tuple, frozenset, range}
#: A default no caller can pass.
MISSING: Any = object()


def sized_subclass(cls: type) -> bool:
    """Whether `cls` is a list or dict subclass (the store's TrackedList/TrackedDict); if so it
    joins `SIZED`, so the next lookup is one set probe.

    >>> sized_subclass(list), sized_subclass(int)
    (True, False)
    """
    if issubclass(cls, (list, dict)):
        SIZED.add(cls)
        return True
    return False


__all__ = [
    "EXCEPTIONS",
    "CATCHABLE",
    "SEQUENCES",
    "DICT_KEYS",
    "DICT_VALUES",
    "SIZED",
    "NUMBERS_AND_NONE",
    "IMMUTABLE",
    "MISSING",
    "sized_subclass",
]
