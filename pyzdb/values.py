"""The pyzdb data model: what can be stored, the `File` blob value, and the checks that say so.

A value exists in three forms:

* the *user* form: plain ``None bool int float str bytes tuple list dict`` and `File`, as a
  client writes it;
* the *tree* form: the same with every dict and list replaced by the store's tracked subclasses
  (`storage.store` builds it; that step is called adoption and uses `validate` for its errors);
* the *frozen* form: plain containers again, each `File` replaced by the one-element
  ``frozenset({("pyzdb.File", digest, name, size)})`` (`freeze_file`, `thaw_file`). `marshal`
  writes it in C, so the journal and checkpoints use it; a frozenset is a type the data model
  never stores, so the encoding is unambiguous.

This module holds the types and their checks. The walks that copy a value into a plain form
(`freeze` for the journal, `to_plain` for a query result) are in `pyzdb.plain`, and the size a
value takes on the wire in `pyzdb.codec.sizes`, beside the encoder whose rules it counts.

Every walk here uses an explicit stack and bounds depth before it hashes anything: a hostile value
may be nested far deeper than the recursion limit, and a tuple nested ~150,000 deep crashes
CPython when it is hashed. Shared sub-values (``t = (t, t)`` a hundred times) are visited once per
depth, never once per path.
"""

from __future__ import annotations

import hashlib
import os
import re
import reprlib
from collections.abc import Callable
from typing import Any

from pyzdb.errors import Error, LimitExceeded
from pyzdb.limits import MAX_DEPTH, ROOT_NAME, SCALAR_TYPES

# `MAX_DEPTH` bounds the nesting of containers (dict, list, tuple) counted from the root: a
# container whose path from the root has more than that many keys is refused. Far beyond real
# documents, far below what recursive code (``==``, ``repr``, msgpack) handles.

#: Deepest nesting `to_plain` returns. Results wrap stored values (``[db['a']]``), so they get
#: some room above `MAX_DEPTH`, and stay below msgpack's own nesting limit (511).
RESULT_DEPTH = 2 * MAX_DEPTH

_FILE_TAG = "pyzdb.File"
_DIGEST = re.compile(r"[0-9a-f]{32,128}")

# The dict classes and the list classes of the tree: the store's tracked classes are registered by
# `register_tree_types` because the store imports this module, not the other way round. Frozen
# sets, so that the walks that pass them on per container (`freeze`) allocate nothing.
_tree_dicts: frozenset[type[dict[Any, Any]]] = frozenset({dict})
_tree_lists: frozenset[type[list[Any]]] = frozenset({list})

_STORES = "pyzdb stores None, bool, int, float, str, bytes, tuple, list, dict and File"
_IMMUTABLE = (
    "a tuple holds only immutable values (None, bool, int, float, str, bytes, tuple and File)"
)
_KEYS = "keys are None, bool, int, float, str, bytes or tuples of those"


class File:
    """An immutable reference to a blob: its sha256 `digest`, original `name` and `size`.

    ``File(path)`` (the seed's spelling, also `File.from_path`) and `File.from_bytes` make a File
    that carries its bytes in `data` until a database stores it: adoption hands the bytes to the
    blob directory and keeps a File without them, so the tree and the journal only ever hold the
    three fields. ``File(digest=..., name=..., size=...)`` names a blob that is already stored.
    Equality and hash use the three fields only. The digest must be lowercase hex: it becomes a
    file name under ``<data>/blobs/``, so nothing else (no ``../``) may get there.

    >>> f = File.from_bytes(b"hello", "greeting.txt")
    >>> f.size, f.read(), f == File(digest=f.digest, name="greeting.txt", size=5)
    (5, b'hello', True)
    """

    __slots__ = ("digest", "name", "size", "data", "_reader")

    digest: str
    name: str
    size: int
    data: bytes | None
    _reader: Callable[[str], bytes] | None

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        digest: str | None = None,
        name: str | None = None,
        size: int | None = None,
        data: bytes | None = None,
    ) -> None:
        if path is not None:
            if digest is not None or size is not None or data is not None:
                raise TypeError(
                    "File(path) reads digest, size and data from the file; "
                    "only name= may be given with it"
                )
            with open(path, "rb") as fh:
                data = fh.read()
            if name is None:
                name = os.path.basename(os.fspath(path))
        if data is not None:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"File data must be bytes, not {type(data).__name__}")
            data = bytes(data)
            computed = hashlib.sha256(data).hexdigest()
            if digest is not None and digest != computed:
                raise ValueError("File digest does not match its data")
            if size is not None and size != len(data):
                raise ValueError("File size does not match its data")
            digest, size = computed, len(data)
        if digest is None or name is None or size is None:
            raise TypeError("File() needs a path, or data= and name=, or digest=, name= and size=")
        if type(digest) is not str or not _DIGEST.fullmatch(digest):
            raise ValueError(f"File digest must be 32-128 lowercase hex digits, got {digest!r}")
        if type(name) is not str:
            raise TypeError(f"File name must be str, not {type(name).__name__}")
        if type(size) is not int or size < 0:
            raise ValueError(f"File size must be an int >= 0, got {size!r}")
        _init = object.__setattr__
        _init(self, "digest", digest)
        _init(self, "name", name)
        _init(self, "size", size)
        _init(self, "data", data)
        _init(self, "_reader", None)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], name: str | None = None) -> File:
        """A File holding the bytes of the local file `path` (named after it unless `name`)."""
        return cls(path, name=name)

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> File:
        """A File holding `data` under `name`."""
        return cls(data=data, name=name)

    def with_reader(self, reader: Callable[[str], bytes] | None) -> File:
        """A copy of this File whose `read` fetches the blob with ``reader(digest)``.

        Whoever owns the blobs (the embedded database, a client connection) attaches the reader
        when it hands a File to its caller; the value itself stays a plain triple. `None` gives
        a copy without a reader (what the tree keeps).
        """
        copy = object.__new__(File)
        for slot in ("digest", "name", "size", "data"):
            object.__setattr__(copy, slot, getattr(self, slot))
        object.__setattr__(copy, "_reader", reader)
        return copy

    def read(self) -> bytes:
        """The blob's bytes: the pending `data`, else what the attached reader returns."""
        if self.data is not None:
            return self.data
        if self._reader is None:
            raise Error(
                f"{self!r} has no blob store attached: read it through the database "
                "that stores it (a File returned by db[...].get() can be read)"
            )
        return self._reader(self.digest)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not File:
            return NotImplemented
        return (self.digest, self.name, self.size) == (other.digest, other.name, other.size)

    def __hash__(self) -> int:
        return hash((self.digest, self.name, self.size))

    def __repr__(self) -> str:
        return f"File(digest={self.digest!r}, name={self.name!r}, size={self.size})"

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError("File is immutable")

    def __delattr__(self, attr: str) -> None:
        raise AttributeError("File is immutable")

    def __copy__(self) -> File:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> File:
        return self


def register_tree_types(dict_type: type[dict[Any, Any]], list_type: type[list[Any]]) -> None:
    """Make `validate` accept the store's tracked dict and list classes as dict and list."""
    global _tree_dicts, _tree_lists
    _tree_dicts |= {dict_type}
    _tree_lists |= {list_type}


def tree_types() -> tuple[frozenset[type[dict[Any, Any]]], frozenset[type[list[Any]]]]:
    """The dict classes and the list classes a stored value may hold (see `register_tree_types`).

    >>> dict in tree_types()[0] and list in tree_types()[1]
    True
    """
    return _tree_dicts, _tree_lists


def describe(path: tuple[Any, ...] | None, rel: tuple[Any, ...] = ()) -> str:
    """Spell a location for an error message: ``db['a'][2]``; `None` is a detached container.

    >>> describe(("users", 2), ("name",))
    "db['users'][2]['name']"
    """
    head = ROOT_NAME if path is not None else "<detached>"
    keys = (path or ()) + rel
    parts = []
    for key in keys if len(keys) <= 12 else keys[:5] + keys[-5:]:
        text = reprlib.repr(key)
        parts.append(f"[{text if len(text) <= 60 else text[:57] + '...'}]")
    if len(keys) > 12:
        parts.insert(5, f"...({len(keys) - 10} more)...")
    return head + "".join(parts)


def _type_name(cls: type) -> str:
    if cls in _tree_dicts:
        return "dict"
    if cls in _tree_lists:
        return "list"
    return cls.__name__


def _too_deep(where: str) -> LimitExceeded:
    return LimitExceeded(f"value nested deeper than {MAX_DEPTH} levels at {where}", budget="depth")


#: A NaN is not equal to itself: a key holding one can never be found again, so a journal
#: record that names it (a write below it, its deletion) could not be replayed.
_NAN_KEY = "cannot use NaN as a dict key (it is not equal to itself, so it cannot be replayed)"


def _key_problem(key: Any, depth: int) -> str | None:
    """Why `key` cannot be a key of a dict at `depth` ("depth" if nested too deep), else None.

    Runs before the key is hashed: a key tuple nested past `MAX_DEPTH` is refused, not hashed.
    """
    cls = key.__class__
    if cls in SCALAR_TYPES:
        return _NAN_KEY if cls is float and key != key else None
    if cls is not tuple:
        return f"cannot use {_type_name(cls)} as a dict key"
    seen: dict[int, int] = {}
    stack = [(key, depth + 1)]
    while stack:
        item, level = stack.pop()
        if level > MAX_DEPTH:
            return "depth"
        if seen.get(id(item), -1) >= level:
            continue
        seen[id(item)] = level
        for part in item:
            pcls = part.__class__
            if pcls is tuple:
                stack.append((part, level + 1))
            elif pcls is float and part != part:
                return _NAN_KEY
            elif pcls not in SCALAR_TYPES:
                return f"cannot use a tuple holding {_type_name(pcls)} as a dict key"
    return None


def _key_error(problem: str, where: str) -> Exception:
    if problem == "depth":
        return _too_deep(f"a dict key at {where}")
    return TypeError(f"{problem} at {where}: {_KEYS}")


def check_key(key: Any, path: tuple[Any, ...] | None = (), depth: int = 0) -> None:
    """Raise unless `key` may be a key of the dict at `path`, itself at nesting `depth`.

    >>> check_key(("a", 1))
    >>> check_key(float("nan"), ("t",))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: cannot use NaN as a dict key (...) at db['t']: keys are None, bool, int, ...
    """
    problem = _key_problem(key, depth)
    if problem is not None:
        raise _key_error(problem, describe(path))


def freeze_file(file: File) -> frozenset[tuple[str, str, str, int]]:
    """The frozen marker that stands for `file` in the journal (see the module docstring)."""
    return frozenset(((_FILE_TAG, file.digest, file.name, file.size),))


def thaw_file(marker: frozenset[Any]) -> File:
    """The `File` that the frozen marker ``frozenset({("pyzdb.File", d, n, s)})`` stands for.

    >>> f = File(digest="0" * 64, name="a", size=1)
    >>> thaw_file(freeze_file(f)) == f
    True
    """
    if len(marker) == 1:
        (entry,) = marker
        if type(entry) is tuple and len(entry) == 4 and entry[0] == _FILE_TAG:
            return File(digest=entry[1], name=entry[2], size=entry[3])
    raise ValueError(f"not a frozen File: {marker!r}")


def validate(
    value: Any, path: tuple[Any, ...] | None = (), depth: int = 1, *, frozen: bool = False
) -> None:
    """Raise the error storing `value` at `path` deserves; return if it can be stored.

    `depth` is the nesting level `value` itself would have (the root's children are at 1).
    Errors name the offending type and its full path: ``TypeError: cannot store set at
    db['a'][2]: ...``; too deep raises `LimitExceeded` with ``budget="depth"``. With `frozen`,
    frozen File markers are accepted (journal replay). The store's adoption has its own fast
    checks and calls this only to explain a refusal, so this walk favours clear messages.

    >>> validate({"a": [1, (2, b"x")]})
    >>> validate({"a": [1, {2}]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: cannot store set at db['a'][1]: pyzdb stores None, bool, int, ...
    """
    seen: dict[int, int] = {}
    stack: list[tuple[Any, tuple[Any, ...], int, bool]] = [(value, (), depth, False)]
    while stack:
        item, rel, level, in_tuple = stack.pop()
        cls = item.__class__
        if cls in SCALAR_TYPES or cls is File:
            continue
        if frozen and cls is frozenset:
            thaw_file(item)
            continue
        kind = (
            tuple
            if cls is tuple
            else dict
            if cls in _tree_dicts
            else list
            if cls in _tree_lists
            else None
        )
        if kind is None or (in_tuple and kind is not tuple):
            reason = _IMMUTABLE if in_tuple else _STORES
            inside = " inside a tuple" if in_tuple else ""
            raise TypeError(
                f"cannot store {_type_name(cls)}{inside} at {describe(path, rel)}: {reason}"
            )
        if level > MAX_DEPTH:
            raise _too_deep(describe(path, rel))
        if seen.get(id(item), -1) >= level:
            continue
        seen[id(item)] = level
        if kind is dict:
            children = []
            for key, child in item.items():
                problem = _key_problem(key, level)
                if problem is not None:
                    raise _key_error(problem, describe(path, rel))
                children.append((child, rel + (key,), level + 1, False))
        else:
            children = [
                (child, rel + (i,), level + 1, kind is tuple) for i, child in enumerate(item)
            ]
        stack.extend(reversed(children))


def map_tuple(value: tuple[Any, ...], leaf: Callable[[Any], Any]) -> tuple[Any, ...]:
    """Rebuild the nested tuple `value` with `leaf` applied to every non-tuple element.

    Iterative and memoised by identity (a shared inner tuple is rebuilt once). Only for stored
    tuples, whose nesting is already bounded by `MAX_DEPTH`.

    >>> map_tuple((1, (2, "x")), lambda leaf: leaf * 2)
    (2, (4, 'xx'))
    """
    done: dict[int, tuple[Any, ...]] = {}
    frames: list[tuple[tuple[Any, ...], Any, list[Any]]] = [(value, iter(value), [])]
    while True:
        src, items, out = frames[-1]
        for item in items:
            if item.__class__ is not tuple:
                out.append(leaf(item))
            elif id(item) in done:
                out.append(done[id(item)])
            else:
                frames.append((item, iter(item), []))
                break
        else:
            frames.pop()
            built = done[id(src)] = tuple(out)
            if not frames:
                return built
            frames[-1][2].append(built)


__all__ = [
    "File",
    "RESULT_DEPTH",
    "check_key",
    "describe",
    "freeze_file",
    "map_tuple",
    "register_tree_types",
    "thaw_file",
    "tree_types",
    "validate",
]
