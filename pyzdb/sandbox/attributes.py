"""The attribute guard and its tables: which names a query may read on which data type.

`ATTRIBUTES` is plain data, read by the compiler (`ALL_ATTRIBUTES`: any other name is refused
before the query runs), by `pyzdb.sandbox_rules()` and by the REPL's completion. At run time
``a.b`` becomes ``_getattr_(a, 'b')``, `AttributeGuard.getattr`, which looks the exact type
of `a` up in a table built from `ATTRIBUTES`: a name maps to None (hand out the bound method
of the instance) or to a factory of `pyzdb.sandbox.methods` (hand out a size-priced one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyzdb.sandbox.iteration import Checked, ItemsView
from pyzdb.sandbox.kinds import DICT_KEYS, DICT_VALUES, MISSING
from pyzdb.sandbox.methods import Methods
from pyzdb.sandbox.strformat import format_map_method, format_method
from pyzdb.values import File

# Left out on purpose, with the reason:
#   every name starting with "_"   dunders reach classes, frames, globals (refused at compile)
#   str.format, str.format_map     only through `strformat` (fields use the guards)
#   str/bytes.maketrans, translate a table maps one character to an arbitrarily long string
#   bytes.fromhex, float.fromhex   class methods: nothing needs them on an instance
#   int.to_bytes, int.from_bytes   a length argument allocates that many bytes at once
#   dict.fromkeys                  a class method that fills a dict from any iterable
#   dict views' .mapping, .isdisjoint, set views: not needed; keys()/values() iterate and `in`
#   generator/frame/code/traceback attributes (gi_frame, f_back, tb_frame...): escapes
#   any attribute of a type object, function, module or exception (AttributeError.obj...)
#   attribute assignment and deletion: no data type has a writable attribute

_STR_BYTES_COMMON = (
    "capitalize center count endswith expandtabs find index isalnum isalpha isascii isdigit "
    "islower isspace istitle isupper join ljust lower lstrip partition removeprefix removesuffix "
    "replace rfind rindex rjust rpartition rsplit rstrip split splitlines startswith strip "
    "swapcase title upper zfill"
).split()
_NUMBER = "as_integer_ratio conjugate imag real is_integer".split()
_SET_READ = (
    "copy difference intersection isdisjoint issubset issuperset symmetric_difference union"
).split()
_SET_WRITE = (
    "add clear difference_update discard intersection_update pop remove "
    "symmetric_difference_update update"
).split()

ATTRIBUTES: dict[type, frozenset[str]] = {
    str: frozenset(
        _STR_BYTES_COMMON
        + "casefold encode isdecimal isidentifier isnumeric isprintable format format_map".split()
    ),
    bytes: frozenset(_STR_BYTES_COMMON + ["decode", "hex"]),
    list: frozenset("append clear copy count extend index insert pop remove reverse sort".split()),
    tuple: frozenset(["count", "index"]),
    dict: frozenset("clear copy get items keys pop popitem setdefault update values".split()),
    int: frozenset(_NUMBER + "bit_count bit_length denominator numerator".split()),
    float: frozenset(_NUMBER + ["hex"]),
    set: frozenset(_SET_READ + _SET_WRITE),
    frozenset: frozenset(_SET_READ),
    range: frozenset("count index start step stop".split()),
}
ATTRIBUTES[bool] = ATTRIBUTES[int]
ATTRIBUTES[complex] = frozenset(["conjugate", "imag", "real"])
ATTRIBUTES[type(None)] = frozenset()

#: The attributes of `pyzdb.values.File`.
FILE_ATTRIBUTES = frozenset({"digest", "name", "size"})

#: Every attribute name allowed on some type: the compiler refuses any other name outright.
ALL_ATTRIBUTES: frozenset[str] = frozenset().union(*ATTRIBUTES.values(), FILE_ATTRIBUTES)

#: How a name is handed out: None (the instance's own bound method or value) or a factory
#: called with the request and the object, returning a size-priced replacement.
Factory = Callable[[Any, Any], Any]

#: str and bytes methods that can grow their text in one C call.
_TEXT_PRICED: dict[str, Factory] = {
    name: getattr(Methods, f"m_{name}")
    for name in ("join", "replace", "center", "ljust", "rjust", "zfill", "expandtabs")
}
#: Methods a query reaches through a priced factory, by type (see `pyzdb.sandbox.methods`).
_PRICED: dict[type, dict[str, Factory]] = {
    str: {
        **_TEXT_PRICED,
        "encode": Methods.m_encode,
        "format": format_method,  # see strformat
        "format_map": format_map_method,
    },
    bytes: {**_TEXT_PRICED, "decode": Methods.m_decode},
    list: {
        "extend": Methods.m_extend,
        "count": Methods.m_count,
        "index": Methods.m_index,
        "remove": Methods.m_remove,
        "sort": Methods.m_sort,
    },
    tuple: {"count": Methods.m_count, "index": Methods.m_index},
    dict: {"update": Methods.m_update, "items": Methods.m_items, "popitem": Methods.m_popitem},
}
#: Set methods that take iterables: each argument is materialized (`Methods.iterable_args`).
_SET_SIZE_SAFE = frozenset({"add", "clear", "copy", "discard", "pop", "remove"})


def _set_method(name: str) -> Factory:
    return lambda request, obj: request.iterable_args(obj, name)


_PRICED.update(
    {
        cls: {name: _set_method(name) for name in ATTRIBUTES[cls] - _SET_SIZE_SAFE}
        for cls in (set, frozenset)
    }
)

#: Per type: attribute name -> None (hand out ``getattr(obj, name)``) or a factory that builds
#: a size-priced replacement. Subclasses (the store's containers, File) join on first sight.
_METHODS: dict[type, dict[str, Factory | None]] = {
    cls: {**dict.fromkeys(names), **_PRICED.get(cls, {})} for cls, names in ATTRIBUTES.items()
}
_FILE_METHODS: dict[str, Factory | None] = dict.fromkeys(FILE_ATTRIBUTES)
# Data the query holds but whose attributes it does not need: an unknown name is still an
# AttributeError, as in Python (``db['missing_value'].upper()`` on a None).
_METHODS.update({cls: {} for cls in (DICT_KEYS, DICT_VALUES, ItemsView, Checked)})


def _subclass_table(cls: type) -> dict[str, Factory | None] | None:
    """The table of a subclass the engine hands out: the store's tracked dict/list, a File."""
    for base in (dict, list):
        if issubclass(cls, base):
            _METHODS[cls] = _METHODS[base]
            return _METHODS[base]
    if cls is File:
        _METHODS[cls] = _FILE_METHODS
        return _FILE_METHODS
    return None


class AttributeGuard(Methods):
    """`_getattr_`, and the priced methods the in-place operators reuse."""

    def getattr(self, obj: Any, name: str) -> Any:
        """`_getattr_`: only the names of `ATTRIBUTES` for the object's exact (data) type."""
        if self.error is not None:
            self.fail(self.error)
        cls = type(obj)
        table = _METHODS.get(cls)
        if table is None:
            table = _subclass_table(cls)
            if table is None:  # a function, type, generator, exception...: nothing at all
                self.refuse(
                    f"attributes of {cls.__name__} objects are not accessible (tried {name!r})"
                )
        how = table.get(name, MISSING)
        if how is None:
            return getattr(obj, name)
        if how is MISSING:
            if hasattr(cls, name):
                self.refuse(f"attribute {name!r} of {cls.__name__} is not allowed")
            raise AttributeError(f"{cls.__name__!r} object has no attribute {name!r}")
        return how(self, obj)

    def priced_method(self, obj: Any, name: str) -> Any:
        """The priced `extend`/`update` of a list or dict (a tracked one records the change)."""
        return _PRICED[dict if isinstance(obj, dict) else list][name](self, obj)


__all__ = ["ATTRIBUTES", "FILE_ATTRIBUTES", "ALL_ATTRIBUTES", "AttributeGuard"]
