"""The pyzdb data model: what can be stored, the `File` blob value, and the frozen form.

A value exists in three forms:

* the *user* form: plain ``None bool int float str bytes tuple list dict`` and `File`, as a
  client writes it;
* the *tree* form: the same with every dict and list replaced by the store's tracked subclasses
  (`storage.store` builds it; that step is called adoption and uses `validate` for its errors);
* the *frozen* form: plain containers again, each `File` replaced by the one-element
  ``frozenset({("pyzdb.File", digest, name, size)})``. `marshal` writes it in C, so the journal
  and checkpoints use it; a frozenset is a type the data model never stores, so the encoding is
  unambiguous.

Every walk here uses an explicit stack and bounds depth before it hashes anything: a hostile value
may be nested far deeper than the recursion limit, and a tuple nested ~150,000 deep crashes
CPython when it is hashed. Shared sub-values (``t = (t, t)`` a hundred times) are visited once per
depth, never once per path.
"""

from __future__ import annotations

import gc
import hashlib
import marshal
import os
import re
import reprlib
from collections import Counter
from collections.abc import Callable
from itertools import chain, islice, repeat
from typing import Any, NamedTuple

from pyzdb.bulk import nested_lists, wire_bound
from pyzdb.errors import Error, LimitExceeded
from pyzdb.gcpause import pause_gc, resume_gc
from pyzdb.limits import MAX_DEPTH, ROOT_NAME

#: Deepest nesting of containers (dict, list, tuple) counted from the root: a container whose
#: path from the root has more than this many keys is refused. Far beyond real documents, far
#: below what recursive code (``==``, ``repr``, msgpack) handles.

#: Deepest nesting `to_plain` returns. Results wrap stored values (``[db['a']]``), so they get
#: some room above `MAX_DEPTH`, and stay below msgpack's own nesting limit (511).
RESULT_DEPTH = 2 * MAX_DEPTH

_NoneType = type(None)

#: The scalar types: stored as they are, and the only types allowed as dict keys (alone or in
#: tuples). Exact types only, so what is read back is what was stored, type for type.
SCALAR_TYPES: frozenset[type] = frozenset({_NoneType, bool, int, float, str, bytes})

_FILE_TAG = "pyzdb.File"
_DIGEST = re.compile(r"[0-9a-f]{32,128}")

# The store's tracked container classes; registered by `register_tree_types` because the store
# imports this module, not the other way round.
_tree_dicts: set[type] = {dict}
_tree_lists: set[type] = {list}

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
    """

    __slots__ = ("digest", "name", "size", "data", "_reader")

    digest: str
    name: str
    size: int
    data: bytes | None

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


def register_tree_types(dict_type: type, list_type: type) -> None:
    """Make `validate` accept the store's tracked dict and list classes as dict and list."""
    _tree_dicts.add(dict_type)
    _tree_lists.add(list_type)


def describe(path: tuple[Any, ...] | None, rel: tuple[Any, ...] = ()) -> str:
    """Spell a location for an error message: ``db['a'][2]``; `None` is a detached container."""
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
    """Raise unless `key` may be a key of the dict at `path`, itself at nesting `depth`."""
    problem = _key_problem(key, depth)
    if problem is not None:
        raise _key_error(problem, describe(path))


def thaw_file(marker: frozenset[Any]) -> File:
    """The `File` that the frozen marker ``frozenset({("pyzdb.File", d, n, s)})`` stands for."""
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


def _freeze_leaf(item: Any) -> Any:
    if item.__class__ is File:
        return frozenset(((_FILE_TAG, item.digest, item.name, item.size),))
    return item


def _freeze_tuple(value: tuple[Any, ...]) -> tuple[Any, ...]:
    if SCALAR_TYPES.issuperset(map(type, value)):
        return value
    return map_tuple(value, _freeze_leaf)


def _scalar_dicts(items: list[Any], keys: bool = False) -> bool:
    """True if every item is a dict whose values (and `keys`) are all scalars.

    Checked in C, with one type stream over all the values: no Python frame per item.
    """
    return (
        all(map(isinstance, items, repeat(dict)))
        and SCALAR_TYPES.issuperset(map(type, chain.from_iterable(map(dict.values, items))))
        and (not keys or SCALAR_TYPES.issuperset(map(type, chain.from_iterable(items))))
    )


def freeze(value: Any) -> Any:
    """The frozen (plain, marshal-able) form of a stored or storable value.

    Runs on every mutation's effect and on checkpoints, so containers of scalars are copied in C
    (``dict(d)``, ``list(l)`` after a C-level type check), and a list or dict whose elements are
    all dicts of scalars is converted with C-level ``map`` calls, without a Python frame per item.
    """
    cls = value.__class__
    if cls in SCALAR_TYPES:
        return value
    if cls is tuple:
        return _freeze_tuple(value)
    if cls is File:
        return _freeze_leaf(value)
    if isinstance(value, dict):
        top: Any = dict(value)
    elif isinstance(value, list):
        top = list(value)
    else:
        raise TypeError(f"cannot freeze {cls.__name__}: not a stored value")
    pause_gc()
    try:
        _freeze_into(top)
    finally:
        resume_gc()
    return top


def _freeze_into(top: Any) -> None:
    """Freeze, in place, the children of `top`, a fresh plain copy of a container."""
    scalars = SCALAR_TYPES
    stack = [top]
    while stack:
        node = stack.pop()
        if node.__class__ is dict:
            if scalars.issuperset(map(type, node.values())):
                continue
            values = list(node.values())
            if _scalar_dicts(values):
                node.update(zip(list(node), map(dict, values), strict=True))
                continue
            pairs = node.items()
        else:
            if scalars.issuperset(map(type, node)):
                continue
            if _scalar_dicts(node):
                node[:] = map(dict, node)
                continue
            lists = frozenset(_tree_lists)
            if nested_lists(node, scalars, frozenset(_tree_dicts), lists) is not None:
                node[:] = map(dict, node)  # records: copied in C, then only their lists
                for record in node:
                    for key, item in record.items():
                        if item.__class__ in lists:
                            record[key] = list(item)
                continue
            pairs = enumerate(node)
        for key, item in pairs:
            icls = item.__class__
            if icls in scalars:
                continue
            if icls is tuple:
                node[key] = _freeze_tuple(item)
            elif icls is File:
                node[key] = _freeze_leaf(item)
            elif isinstance(item, dict):
                node[key] = copy = dict(item)
                stack.append(copy)
            elif isinstance(item, list):
                node[key] = copy = list(item)
                stack.append(copy)
            else:
                raise TypeError(f"cannot freeze {icls.__name__}: not a stored value")


# -- query results -------------------------------------------------------------------------

_RESULT_LEAVES = SCALAR_TYPES | {File}
_MARSHAL_DATA = SCALAR_TYPES | {tuple, list, dict, set, frozenset}
_NOT_DATA_HINTS = {
    "dict_keys": " (return list(d.keys()))",
    "dict_values": " (return list(d.values()))",
    "dict_items": " (return list(d.items()))",
    "range": " (return list(range(...)))",
    "generator": " (return a list, e.g. list(x for ...))",
    "map": " (return list(map(...)))",
    "filter": " (return list(filter(...)))",
    "zip": " (return list(zip(...)))",
    "enumerate": " (return list(enumerate(...)))",
}


def _not_data(cls: type, rel: tuple[Any, ...]) -> TypeError:
    where = "result" + describe((), rel)[2:]
    hint = _NOT_DATA_HINTS.get(cls.__name__, "")
    return TypeError(
        f"query result contains {cls.__name__} at {where}: only None, bool, int, "
        f"float, str, bytes, tuple, list, dict, set, frozenset and File can be "
        f"returned{hint}"
    )


def _marshal_copy(value: Any, max_depth: int) -> Any:
    """Deep-copy plain data through marshal (C); `None` if that is not safe or not possible.

    marshal also writes code objects, complex numbers, Ellipsis, bytearray..., so the types of
    everything reachable are checked first, a level at a time with `gc.get_referents` (C). A
    value whose walk visits more objects than the dump has bytes shares sub-values, and the
    memoising walk handles it instead.
    """
    try:
        blob = marshal.dumps(value)
    except (ValueError, TypeError):
        return None
    budget = len(blob)
    level: list[Any] = [value]
    for _ in range(max_depth + 1):
        if not _MARSHAL_DATA.issuperset(map(type, level)):
            return None
        budget -= len(level)
        if budget < 0:
            return None
        level = gc.get_referents(*level)
        if not level:
            return marshal.loads(blob)
    return None


def to_plain(value: Any, max_depth: int = RESULT_DEPTH) -> Any:
    """A detached deep copy of a query result in plain types, refusing anything but data.

    Tracked containers become plain dicts and lists, and the caller can keep or mutate the copy
    without touching the tree. Functions, generators, views, ranges, types... raise ``TypeError:
    query result contains <type> at result[...]``; nesting beyond `max_depth` (a cycle, for one)
    raises `LimitExceeded`. Shared sub-values are copied once and stay shared.
    """
    cls = value.__class__
    if cls in _RESULT_LEAVES:
        return value
    if cls in _MARSHAL_DATA:
        copy = _marshal_copy(value, max_depth)
        if copy is not None:
            return copy
    pause_gc()
    try:
        return _plain_walk(value, max_depth)
    finally:
        resume_gc()


def _plain_kind(cls: type) -> type | None:
    if cls in (tuple, set, frozenset):
        return cls
    if issubclass(cls, dict):
        return dict
    if issubclass(cls, list):
        return list
    return None


def _plain_walk(value: Any, max_depth: int) -> Any:
    """`to_plain` for what marshal refused: a post-order walk over containers, copies memoised."""
    leaves = _RESULT_LEAVES
    order: list[tuple[Any, type, bool]] = []
    state: dict[int, bool] = {}  # id -> True once copied in `order`, False while being walked
    # Entries: (item, rel, level, None) to enter an item, (item, kind, flat, True) to leave it.
    stack: list[tuple[Any, Any, Any, Any]] = [(value, (), 0, None)]
    while stack:
        item, rel, level, leaving = stack.pop()
        if leaving:  # rel and level hold the kind and flatness here
            state[id(item)] = True
            order.append((item, rel, level))
            continue
        cls = item.__class__
        if cls in leaves:
            continue
        kind = _plain_kind(cls)
        if kind is None:
            raise _not_data(cls, rel)
        seen = state.get(id(item))
        if seen is True:
            continue
        if seen is False or level > max_depth:
            what = (
                "contains a reference cycle"
                if seen is False
                else f"is nested deeper than {max_depth} levels"
            )
            raise LimitExceeded(
                f"query result {what} at result{describe((), rel)[2:]}", budget="depth"
            )
        state[id(item)] = False
        if kind is dict:
            flat = leaves.issuperset(map(type, item.values())) and leaves.issuperset(
                map(type, item)
            )
        else:
            flat = leaves.issuperset(map(type, item)) or (
                kind is list and _scalar_dicts(item, keys=True)
            )
        stack.append((item, kind, flat, True))
        if flat:
            continue
        if kind is dict:
            for key, child in reversed(item.items()):
                stack.append((child, rel + (key,), level + 1, None))
                stack.append((key, rel, level + 1, None))
        else:
            stack.extend(
                (child, rel + (i,), level + 1, None) for i, child in reversed(list(enumerate(item)))
            )
    copies: dict[int, Any] = {}

    def conv(child: Any) -> Any:
        return child if child.__class__ in leaves else copies[id(child)]

    for item, kind, flat in order:
        if kind is dict:
            copy: Any = dict(item) if flat else {conv(k): conv(v) for k, v in item.items()}
        elif kind is list:
            if not flat:
                copy = list(map(conv, item))
            elif leaves.issuperset(map(type, item)):
                copy = list(item)
            else:
                copy = list(map(dict, item))
        elif kind is tuple:
            copy = item if flat else tuple(map(conv, item))
        else:
            copy = kind(item) if flat else kind(map(conv, item))
        copies[id(item)] = copy
    return copies[id(value)]


# -- result size on the wire ----------------------------------------------------------------
#
# A result may refer to one container many times (``[big] * 1000``). In this process that costs
# nothing, but msgpack (the wire codec, `pyzdb.net.protocol.encode_value`) writes every reference in
# full, so the size that counts against the result budget is the *expanded* one. The sizes below
# are msgpack's: exact for most values, and otherwise a bound a few bytes over (where a C-level
# pass was enough to decide), so a value within the budget here always encodes within it.

_FIXED_SIZE = {_NoneType: 1, bool: 1, float: 9}  # msgpack's size whatever the value
_MARKED = (tuple, set, frozenset)  # written as [ext mark (3 bytes), *items]
_PLAIN_RESULT = frozenset({list, dict, tuple, set, frozenset})
_SEQUENCES = frozenset({list, tuple, set, frozenset})
_PLAIN_VALUES = SCALAR_TYPES | _PLAIN_RESULT
# key types whose equal keys are the same type and size (1 == 1.0 == True are not), so keys can
# be counted by value
_UNIQUE_KEYS = frozenset({str, bytes, _NoneType})


class _Absent:
    """What `dict.get` gives `_Sizer.records` for a missing key (``dict.get`` never calls a
    subclass's ``__missing__``)."""


_ABSENT = _Absent()
_RUN = 4096  # elements a Python-level sum adds up between two checks of the limit


class Measure(NamedTuple):
    """What `measure` found: the expanded wire `size`, and what detaching the value needs.

    `plain`: the value holds only exact ``list dict tuple set frozenset`` and scalars, within
    `RESULT_DEPTH`, so `to_plain` would return an equal copy. `files`: it holds a `File`.
    """

    size: int
    plain: bool
    files: bool
    #: Only scalars, dicts and lists (tracked ones too): `protocol.encode_native` writes it.
    native: bool = False


def expanded_size(value: Any, limit: int) -> int:
    """Bytes msgpack writes for `value`, every shared reference expanded in full.

    Counting stops once the total passes `limit` (the result is then some number over it), and
    each distinct container is scanned once however often it is referred to, so a result bomb
    (``[[big] * 1000] * 1000``) is refused in the time its distinct parts take. Lists of scalars
    and lists of flat dicts or tuples are measured with C-level passes (``set(map(type, ...))``,
    ``sum(map(len, ...))``), no Python step per element. Objects that are not data count as one
    byte (whoever encodes the value refuses them). A value that contains itself has no finite
    expansion: `LimitExceeded` with ``budget="depth"``, as from `to_plain`.
    """
    return measure(value, limit).size


def measure(value: Any, limit: int) -> Measure:
    """`expanded_size` of `value`, and whether it is already plain (see `Measure`).

    First `bulk.wire_bound`, a level at a time in C: a bound within `limit` settles it (and is
    the size returned, a little over the exact one). Else a walk may settle for C-level bounds
    a little over the exact sizes (``2 + b/4`` bytes for an int of b bits, 5 bytes of header
    for every str); only when their total passes `limit` does a second walk count exactly, so
    the verdict is the exact one's.
    """
    fast = wire_bound(
        value,
        limit,
        RESULT_DEPTH,
        scalars=SCALAR_TYPES,
        dicts=frozenset(_tree_dicts),
        sequences=_SEQUENCES | frozenset(_tree_lists),
        plain_types=_PLAIN_VALUES,
    )
    if fast is not None and fast[0] <= limit:  # a bound within the limit: settled in C
        return Measure(fast[0], fast[1], False, fast[2])
    found = _Sizer(limit, False).run(value)
    return found if found.size <= limit else _Sizer(limit, True).run(value)


class _Sizer:
    """One `measure` walk, post-order over the distinct containers, sizes memoised by id."""

    __slots__ = ("limit", "exact", "sizes", "entered", "texts", "plain", "files")

    def __init__(self, limit: int, exact: bool) -> None:
        self.limit = limit
        self.exact = exact  # count exactly: no bounds, however expensive
        self.sizes: dict[int, int] = {}
        self.entered: set[int] = set()  # containers on the current path: meeting one is a cycle
        # UTF-8 sizes of the long non-ASCII str met (by id): each is encoded once, however
        # often the value refers to it
        self.texts: dict[int, int] = {}
        self.plain = True
        self.files = False

    def run(self, value: Any) -> Measure:
        cls = value.__class__
        if _plain_kind(cls) is None:
            size = self.scalar(value) if cls in SCALAR_TYPES else self.leaf(value)
            return Measure(size, self.plain, self.files)
        limit = self.limit
        sizes = self.sizes
        entered = self.entered
        # (container, level, None) measures its own elements; (container, level, (own size,
        # ids of its container elements)) adds up those, measured by then
        stack: list[tuple[Any, int, Any]] = [(value, 0, None)]
        while stack:
            node, level, pending = stack.pop()
            key = id(node)
            if pending is not None:
                own, ids = pending
                entered.discard(key)
                size = sizes[key] = own + sum(map(sizes.__getitem__, ids))
                if size > limit:
                    return Measure(size, False, self.files)
                continue
            if key in sizes:
                continue
            if key in entered:
                raise LimitExceeded("query result contains a reference cycle", budget="depth")
            cls = node.__class__
            kind = _plain_kind(cls)
            if cls is not kind or level >= RESULT_DEPTH:
                self.plain = False  # to_plain copies it, or refuses it with its path
            marked = kind in _MARKED
            own = _head(len(node) + marked) + 3 * marked
            children: list[Any] = []
            for part in (dict.keys(node), dict.values(node)) if kind is dict else (node,):
                own += self.part(part, children, limit - own)
                if own > limit:
                    return Measure(own, False, self.files)
            if not children:
                sizes[key] = own
                continue
            entered.add(key)
            stack.append((node, level, (own, list(map(id, children)))))
            distinct = dict(zip(map(id, children), children, strict=True))
            stack.extend(
                (child, level + 1, None) for child in distinct.values() if id(child) not in sizes
            )
        return Measure(sizes[id(value)], self.plain, self.files)

    def part(self, items: Any, children: list[Any], left: int) -> int:
        """Size of the scalars and leaves among `items`; their containers go to `children`."""
        types = set(map(type, items))
        if SCALAR_TYPES.issuperset(types):
            return self.scalars(items, types, len(items), left)
        kinds = set(map(_plain_kind, types))
        if None not in kinds:
            flat = self.flat(items, types, kinds, left)
            if flat is None:
                children.extend(items)
                return 0
            return flat
        total = 0
        for item in items:
            cls = item.__class__
            if cls in SCALAR_TYPES:
                total += self.scalar(item)
            elif _plain_kind(cls) is not None:
                children.append(item)
            else:
                total += self.leaf(item)
        return total

    def flat(self, items: Any, types: set[type], kinds: set[Any], left: int) -> int | None:
        """Size of the containers `items` if they all hold scalars only (else None), in C.

        Every reference counts in full (``[d] * 1000`` is 1000 dicts): the element count is
        checked first, so a bomb of flat containers stops before its elements are visited.
        """
        count = len(items)
        entries = sum(map(len, items))
        if kinds == {dict}:
            if 2 * entries + count > left:  # every key and value is at least one byte
                return 2 * entries + count
            size = self.records(items, count, entries, left)
            if size is None:
                key_types = set(map(type, chain.from_iterable(items)))
                value_types = set(map(type, chain.from_iterable(map(dict.values, items))))
                if not SCALAR_TYPES.issuperset(key_types | value_types):
                    return None
                size = count * _head(max(map(len, items)))
                size += self.scalars(
                    lambda: chain.from_iterable(items), key_types, entries, left - size
                )
                size += self.scalars(
                    lambda: chain.from_iterable(map(dict.values, items)),
                    value_types,
                    entries,
                    left - size,
                )
        elif dict in kinds:
            return None
        else:
            if entries + count > left:
                return entries + count
            item_types = set(map(type, chain.from_iterable(items)))
            if not SCALAR_TYPES.issuperset(item_types):
                return None
            marked = not kinds.isdisjoint(_MARKED)
            size = count * (_head(max(map(len, items)) + marked) + 3 * marked)
            size += self.scalars(
                lambda: chain.from_iterable(items), item_types, entries, left - size
            )
        if size < 0:
            return None
        if not _PLAIN_RESULT.issuperset(types):
            self.plain = False
        return size

    def records(self, items: Any, count: int, entries: int, left: int) -> int | None:
        """Size of `items`, dicts that all have the same str keys, a column of values at a time.

        A column (one key's values) usually has one type, so it takes the C-level passes of
        `scalars` where the mixed values of a whole dict would take a Python step each. None if
        the dicts' keys differ; -1 if a value is not a scalar.
        """
        keys = list(next(iter(items)))
        if entries != count * len(keys) or not _UNIQUE_KEYS.issuperset(map(type, keys)):
            return None  # (equal keys of other types may differ in type, 1 and 1.0)
        size = count * (_head(len(keys)) + sum(map(self.scalar, keys)))
        for key in keys:
            column = list(map(dict.get, items, repeat(key), repeat(_ABSENT)))
            types = set(map(type, column))
            if _Absent in types:
                return None  # a dict lacks the key (so, by the count, has another)
            if not SCALAR_TYPES.issuperset(types):
                return -1
            size += self.scalars(column, types, count, left - size)
            if size > left:
                break
        return size

    def leaf(self, value: Any) -> int:
        """Size of what is neither a scalar nor a container: a File, or something not data."""
        self.plain = False
        if value.__class__ is File:
            self.files = True
            size = (
                4 + self.scalar(value.digest) + self.scalar(value.name) + self.scalar(value.size)
            )  # [mark (3 bytes), digest, name, size(, data)]
            return size if value.data is None else size + self.scalar(value.data)
        if isinstance(value, (bytearray, memoryview)):  # msgpack writes them as bytes
            return _raw_size(memoryview(value).nbytes, False)
        return 1

    def scalars(self, items: Any, types: set[type], count: int, left: int) -> int:
        """Size of `count` scalars of `types`: `items` is a sized iterable of them, or a
        function that makes a fresh iterator over them (each pass calls it again)."""
        make: Callable[[], Any] = items if callable(items) else lambda: items
        if len(types) != 1:
            return _sum_until(map(self.scalar, make()), left)
        (cls,) = types
        if cls in _FIXED_SIZE:
            return _FIXED_SIZE[cls] * count
        if cls is int:
            # bit_length b bounds msgpack's size by 2 + b/4 (1 byte up to 5 bits, 9 up to 63,
            # big ints a byte per 8 bits plus 9): one C pass. Else count the ints per bit
            # length (C), exact when none is negative, else by the larger size of either sign.
            size = 2 * count + (sum(map(int.bit_length, make())) + 3) // 4
            if self.exact or size > left:
                table = _unsigned_size if min(make(), default=0) >= 0 else _bits_size
                size = sum(
                    table(bits) * n for bits, n in Counter(map(int.bit_length, make())).items()
                )
            return size
        chars = sum(map(len, make()))
        if chars + count > left:  # a byte a character and a header byte at least: over already
            return chars + count
        text = cls is str
        if text and not all(map(str.isascii, make())):
            return _sum_until(map(self.scalar, make()), left)
        size = chars + 5 * count  # a byte a character (ASCII), and a header of up to 5
        if self.exact or size > left:  # the headers by length, counted in C
            size = sum(
                _raw_size(length, text) * n for length, n in Counter(map(len, make())).items()
            )
        return size

    def scalar(self, value: Any) -> int:
        """msgpack's exact size for one scalar."""
        cls = value.__class__
        if cls is str and not value.isascii():
            if len(value) <= _RUN:
                return _raw_size(len(value.encode("utf-8", "surrogatepass")), True)
            size = self.texts.get(id(value))
            if size is None:
                size = self.texts[id(value)] = _raw_size(
                    len(value.encode("utf-8", "surrogatepass")), True
                )
            return size
        return _scalar_size(value)


def _sum_until(sizes: Any, left: int) -> int:
    """Sum the iterator `sizes` a run at a time, stopping once the total passes `left`."""
    total = 0
    while total <= left:
        run = list(islice(sizes, _RUN))
        if not run:
            break
        total += sum(run)
    return total


def _head(count: int) -> int:
    """msgpack's header for an array or map of `count` elements."""
    return 1 if count < 16 else 3 if count < 65536 else 5


def _raw_size(size: int, text: bool) -> int:
    """msgpack's size for `size` bytes of str (`text`: up to 31 have a 1-byte header) or bytes."""
    if text and size < 32:
        return size + 1
    return size + (2 if size < 256 else 3 if size < 65536 else 5)


def _unsigned_size(bits: int) -> int:
    """msgpack's size for an int >= 0 of `bits` bits."""
    if bits <= 7:
        return 1
    if bits <= 8:
        return 2
    if bits <= 16:
        return 3
    if bits <= 32:
        return 5
    if bits <= 64:
        return 9
    return 4 + _raw_size((bits + 8) // 8, False)  # [ext mark, big-endian bytes]


def _bits_size(bits: int) -> int:
    """msgpack's largest size for an int of `bits` bits, either sign."""
    if bits <= 5:
        return 1
    if bits <= 7:
        return 2
    if bits <= 15:
        return 3
    if bits <= 31:
        return 5
    if bits <= 63:
        return 9
    return 4 + _raw_size((bits + 8) // 8, False)  # [ext mark, big-endian bytes]


def _scalar_size(value: Any) -> int:
    """msgpack's size for one scalar other than a non-ASCII str (see `_Sizer.scalar`)."""
    cls = value.__class__
    if cls is int:
        if -32 <= value < 128:
            return 1
        if -128 <= value < 256:
            return 2
        if -32768 <= value < 65536:
            return 3
        if -(2**31) <= value < 2**32:
            return 5
        if -(2**63) <= value < 2**64:
            return 9
        return 4 + _raw_size((value.bit_length() + 8) // 8, False)
    if cls is str:
        return _raw_size(len(value), True)
    if cls is bytes:
        return _raw_size(len(value), False)
    return _FIXED_SIZE[cls]


__all__ = [
    "File",
    "MAX_DEPTH",
    "Measure",
    "RESULT_DEPTH",
    "SCALAR_TYPES",
    "check_key",
    "describe",
    "expanded_size",
    "freeze",
    "map_tuple",
    "measure",
    "register_tree_types",
    "thaw_file",
    "to_plain",
    "validate",
]
