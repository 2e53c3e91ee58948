"""What a query can reach at run time: the budget, the guard functions, attributes and builtins.

RestrictedPython rewrites a query's syntax into calls of guard names (``a.b`` becomes
``_getattr_(a, 'b')``, ``for x in y`` becomes ``for x in _getiter_(y)``) and `pyzdb.sandbox.runner`
adds its own rewrites (``s * n`` becomes a type check or ``_mul_(s, n)``, a tuple display
``_tuple_(...)``, an f-string ``_fstr_(...)``). This module supplies every one of them. A
`Request` holds the state of one evaluation -- budget accounts, the sticky stop, the tuple-depth
memo -- and its bound methods go into the fresh globals of that request only.

Theory of operation
-------------------
1. Nothing the query can call loops in C over a source the budget does not bound. Every sized
   object (list, dict, str, range...) is at most `Budget.max_size` long when a constructor here
   builds it, and its length is charged to the *steps* account up front; every other iterable is
   wrapped in ``compress(it, shared)``, where ``shared`` is one ``islice(count(), steps)`` per
   request: each item taken anywhere advances it, in C, so the count is exact and costs no
   Python call per item. When it runs dry a tail check stops the request.
2. No single C call builds an object larger than `max_size` (elements, characters, bytes, or
   bits/8 of an int): repetition, powers, shifts, padding, joins, printf and f-string widths are
   priced before they run.
3. Tuples nest at most `MAX_TUPLE_DEPTH` deep and expand to at most `max_size` elements. CPython
   hashes a tuple by recursing in C without a depth check (~150,000 levels crash it with
   SIGSEGV) and visits shared sub-tuples once per path (a doubling loop makes a 2**60 hash); every
   place that builds a tuple holding query objects measures it first, memoised by identity.
4. A refusal or overrun raises `Stop`, a BaseException: ``except Exception`` cannot catch it,
   `pyzdb.sandbox.runner` refuses ``finally`` and bare ``except``, and each ``except`` clause runs
   `Request.catch` first, which re-raises a pending stop. Every guard call re-raises it too.
"""

from __future__ import annotations

import operator
import os
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, compress, count, islice, repeat
from time import monotonic
from typing import Any

from pyzdb.errors import Error, LimitExceeded, SecurityError
from pyzdb.sandbox.strformat import format_map_method, format_method

#: Deepest tuple-in-tuple nesting a query may build. CPython hashes nested tuples recursively in
#: C with no depth check; ~150,000 levels overflow an 8 MiB stack. Stored tuples are at most
#: `pyzdb.values.MAX_DEPTH` deep and decoded parameters are bounded by the codec's own limit.
MAX_TUPLE_DEPTH = 1000

#: Deepest nesting of iterator wrappers (a map of a filter of a zip of an iter of ...) a query
#: may build. Advancing the outer one calls each inner one's `__next__` in C with no recursion
#: check: ~200,000 levels overflow the C stack (SIGSEGV). A generator expression in between
#: is a Python frame, which the recursion limit bounds instead.
MAX_ITER_DEPTH = 500

#: Most items one C call may insert into a set or dict under a single hash value unless they
#: are all equal. Distinct keys that share a hash (ints equal modulo 2**61 - 1, tuples built
#: from them) make each insertion walk all the others: 200,000 of them took minutes in one
#: `set()` call, which no signal interrupts. Equal duplicates are cheap and allowed.
COLLISION_LIMIT = 2048

#: Longest str/bytes `int()` accepts, whatever the base (CPython's own default
#: limit is 4300 digits; this holds even if the host raised or disabled it).
INT_TEXT_LIMIT = 5000

#: Codecs and error handlers `str.encode`, `bytes.decode`, `str()` and `bytes()` accept: none
#: grows its input more than four times, and a custom handler the host registered could run
#: arbitrary code.
ENCODINGS = frozenset(
    {
        "utf-8",
        "utf8",
        "utf_8",
        "ascii",
        "latin-1",
        "latin1",
        "latin_1",
        "iso-8859-1",
        "utf-16",
        "utf16",
        "utf_16",
        "utf-32",
        "utf32",
        "utf_32",
    }
)
ERROR_HANDLERS = frozenset({"strict", "ignore", "replace"})


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
    """

    time: float = 5.0
    steps: int = 50_000_000
    max_size: int = 10_000_000
    max_result: int = 64 * 2**20
    memory: int = 2**30
    kill_after: float | None = None
    #: The process's resident size no request may push it past (`--max-memory`), or None.
    max_memory: int | None = None


class Stop(BaseException):  # noqa: N818 - a control-flow signal, not an error type
    """Ends a request: carries the pyzdb error to raise at the boundary.

    A BaseException so that ``except Exception`` in the query does not catch it.
    """

    def __init__(self, error: Error | None = None) -> None:
        super().__init__(error)
        self.error = error


class AsyncStop(Stop):
    """Raised in the evaluating thread by the watchdog; the reason is in `Request.error`."""


# -- the attribute table: plain data -----------------------------------------------------------
#
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

#: `pyzdb.values.File`, matched by module and name so this module never imports the data model.
FILE_ATTRIBUTES = frozenset({"digest", "name", "size"})

#: Every attribute name allowed on some type: the compiler refuses any other name outright.
ALL_ATTRIBUTES: frozenset[str] = frozenset().union(*ATTRIBUTES.values(), FILE_ATTRIBUTES)

#: The exception classes a query may name, raise and catch: all `Exception` subclasses. The
#: BaseException family (SystemExit, KeyboardInterrupt, GeneratorExit) is left out: raised in a
#: server they end the process; MemoryError is left out because it is a budget signal.
EXCEPTIONS: tuple[type[Exception], ...] = (
    ArithmeticError,
    AssertionError,
    AttributeError,
    Exception,
    IndexError,
    KeyError,
    LookupError,
    NameError,
    NotImplementedError,
    OverflowError,
    RecursionError,
    RuntimeError,
    StopIteration,
    TypeError,
    UnboundLocalError,
    UnicodeError,
    ValueError,
    ZeroDivisionError,
)
_CATCHABLE = frozenset(EXCEPTIONS)

_SEQUENCES = (str, bytes, list, tuple)
_DICT_KEYS, _DICT_VALUES = type({}.keys()), type({}.values())
#: Types whose len() is known and bounded; subclasses of list and dict join on first sight.
_SIZED: set[type] = {list, tuple, str, bytes, dict, set, frozenset, range, _DICT_KEYS, _DICT_VALUES}
_SCALARS = frozenset({int, float, bool, type(None), complex})
_IMMUTABLE = _SCALARS | {str, bytes, tuple, frozenset, range}
_MISSING: Any = object()

_sum, _min, _max, _any, _all, _iter = sum, min, max, any, all, iter
_list, _tuple, _set, _frozenset, _dict, _bytes, _str = list, tuple, set, frozenset, dict, bytes, str
_sorted, _map, _filter, _zip, _enumerate, _range = sorted, map, filter, zip, enumerate, range
_int, _round, _isinstance, _type, _len, _repr = int, round, isinstance, type, len, repr
_first = operator.itemgetter(0)


class ItemsView:
    """``dict.items()`` as a query sees it: each pair it hands out has its depth checked.

    Iterating a real items view makes a fresh ``(key, value)`` tuple per item in C, so a loop
    that re-wraps a value as ``{0: p}.items()`` would nest tuples without any guard. A ``for
    k, v in d.items()`` loop unpacks at once and gets the raw view (`Request.getiter`).
    """

    __slots__ = ("view", "request")

    def __init__(self, view: Any, request: Request) -> None:
        self.view = view
        self.request = request

    def __iter__(self) -> Iterator[Any]:
        return _map(self.request.check_tuple, self.view)

    def __reversed__(self) -> Iterator[Any]:
        return _map(self.request.check_tuple, reversed(self.view))

    def __len__(self) -> int:
        return _len(self.view)

    def __contains__(self, item: object) -> bool:
        return item in self.view

    def __eq__(self, other: object) -> bool:
        return self.view == (other.view if _type(other) is ItemsView else other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return _repr(self.view)

    def _pairs(self, other: Any) -> tuple[set[Any], set[Any]]:
        return _set(self), _set(self.request.materialize(other))

    def __and__(self, other: Any) -> set[Any]:
        mine, theirs = self._pairs(other)
        return mine & theirs

    def __or__(self, other: Any) -> set[Any]:
        mine, theirs = self._pairs(other)
        return mine | theirs

    def __xor__(self, other: Any) -> set[Any]:
        mine, theirs = self._pairs(other)
        return mine ^ theirs

    def __sub__(self, other: Any) -> set[Any]:
        mine, theirs = self._pairs(other)
        return mine - theirs

    def __rsub__(self, other: Any) -> set[Any]:
        mine, theirs = self._pairs(other)
        return theirs - mine

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__


_SIZED.add(ItemsView)


class Checked:
    """A `zip`/`enumerate` iterator whose tuples are depth-checked unless unpacked at once."""

    __slots__ = ("raw", "check", "depth")

    def __init__(self, raw: Iterator[Any], check: Callable[[Any], Any], depth: int = 1) -> None:
        self.raw = raw
        self.check = check
        self.depth = depth

    def __iter__(self) -> Iterator[Any]:
        return _nested(_NMap(self.check, self.raw), self.depth)

    def __next__(self) -> Any:
        return self.check(next(self.raw))


class _NChain(chain):
    """`Request.lazy_iter`'s iterator: C speed, and it knows how deep iterators nest in it."""

    __slots__ = ("depth",)


class _NMap(map):
    __slots__ = ("depth",)


class _NFilter(filter):
    __slots__ = ("depth",)


_NESTED = frozenset({_NChain, _NMap, _NFilter, Checked})


def _nested(wrapper: Any, depth: int) -> Any:
    wrapper.depth = depth
    return wrapper


def _nest_depth(sources: Iterable[Any]) -> int:
    """Depth of a new wrapper of `sources`: one more than the deepest (plain data is 0, an
    iterator of unknown kind 1); over `MAX_ITER_DEPTH` the request is refused."""
    depth = 0
    for source in sources:
        cls = _type(source)
        if cls in _NESTED:
            inner = source.depth
        elif cls in _SIZED:
            continue
        else:
            inner = 1
        if inner > depth:
            depth = inner
    if depth >= MAX_ITER_DEPTH:
        _request().refuse(
            f"iterators nested more than {MAX_ITER_DEPTH} deep are refused "
            "(advancing them would overflow the C stack)"
        )
    return depth + 1


_PRINTF_STR = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d*))?[hlL]?(?P<conv>.)",
    re.S,
)
_PRINTF_BYTES = re.compile(_PRINTF_STR.pattern.encode(), re.S)
_DIGITS = re.compile(r"\d+")
#: A format with one bare %s, %d or %i and no other %: `Request.mod` prices it without a walk.
_ONE_CONVERSION = re.compile(r"[^%]*%[sdi][^%]*", re.S)
_ONE_ARG = frozenset({int, float, str})
#: Short formats already classified by `_one_conversion` (a query formats the same constant
#: in a loop); bounded, so varied formats cost a regex match each and no memory.
_FORMATS: dict[str, bool] = {}
_FORMATS_MAX = 1024


def _one_conversion(fmt: str) -> bool:
    known = _FORMATS.get(fmt)
    if known is None:
        known = _ONE_CONVERSION.fullmatch(fmt) is not None
        if _len(fmt) <= 64:
            if _len(_FORMATS) >= _FORMATS_MAX:
                _FORMATS.clear()
            _FORMATS[fmt] = known
    return known


class Request:
    """The state and the guards of one evaluation; `pyzdb.sandbox.run` makes one per request."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.max_size = budget.max_size
        self.max_bits = budget.max_size * 8
        #: Items of sized iterables still allowed (charged up front).
        self.steps_left = budget.steps
        #: The shared selector of lazy iteration: every item drawn anywhere advances it in C.
        self.lazy = islice(count(1), budget.steps)
        #: The pending stop: once set, every guard raises it again.
        self.error: Error | None = None
        self.deadline = 0.0
        self.memory_base: int | None = None
        self.fired = False  # the watchdog raised AsyncStop in the evaluating thread
        self._tuples: dict[int, tuple[int, int]] = {}  # id -> (depth, expanded size), measured
        self._keep: list[Any] = []  # keeps measured tuples alive, so their ids stay theirs

    # -- stopping ---------------------------------------------------------------------------

    def fail(self, error: Error) -> Any:
        """Stop the request with `error`, now and at every later guard call."""
        if self.error is None:
            self.error = error
        raise Stop(self.error)

    def refuse(self, message: str) -> Any:
        return self.fail(SecurityError(message))

    def too_big(self, what: str, size: int) -> Any:
        return self.fail(
            LimitExceeded(
                f"query would build {what} of size {size}, over the size budget of {self.max_size}",
                "size",
            )
        )

    def _steps_exceeded(self) -> Any:
        return self.fail(
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

    # -- iteration and materialisation: the steps account ------------------------------------

    def _sized(self, cls: type) -> bool:
        if issubclass(cls, (list, dict)):  # the store's TrackedList/TrackedDict
            _SIZED.add(cls)
            return True
        return False

    def lazy_iter(self, obj: Any) -> Iterator[Any]:
        """Iterate `obj` drawing one step per item from the shared account, at C speed."""
        return _nested(_NChain(compress(obj, self.lazy), self._tail()), _nest_depth((obj,)))

    def _tail(self) -> Iterator[Any]:
        # Reached when compress stops: either `obj` ran out, or the account did.
        if next(self.lazy, None) is None:
            self._steps_exceeded()
        return
        yield  # a generator: runs only when chain reaches it

    def getiter(self, obj: Any, unpacked: bool = False) -> Any:
        """`_getiter_`: every for loop and comprehension. `unpacked`: the target is a tuple."""
        if self.error is not None:
            self.fail(self.error)
        cls = _type(obj)
        if cls in _SIZED or self._sized(cls):
            n = _len(obj)
            if n <= self.steps_left:
                self.steps_left -= n
                if unpacked and cls is ItemsView:
                    return obj.view
                return obj
        elif unpacked and cls is Checked:
            return obj.raw
        return self.lazy_iter(obj)

    def consume(self, obj: Any) -> Any:
        """For builtins that read everything (sum, min, max): a long sized input fails at once."""
        cls = _type(obj)
        if cls in _SIZED or self._sized(cls):
            n = _len(obj)
            if n > self.steps_left:
                self._steps_exceeded()
            self.steps_left -= n
            return obj
        return self.lazy_iter(obj)

    def materialize(self, obj: Any) -> Any:
        """`obj`, or a list of its items, of at most `max_size` items: safe to build from in C."""
        cls = _type(obj)
        if cls in _SIZED or self._sized(cls):
            n = _len(obj)
            if n > self.max_size:
                self.too_big(f"a {cls.__name__} copy", n)
            if n > self.steps_left:
                self._steps_exceeded()
            self.steps_left -= n
            return obj
        items = _list(islice(self.lazy_iter(obj), self.max_size + 1))
        if _len(items) > self.max_size:
            self.too_big("a collection", _len(items))
        return items

    def starred(self, obj: Any) -> Any:
        """`_starred_`: ``[*x]``, ``(*x,)``, ``f(*x)``: CPython unpacks in C before any call."""
        if self.error is not None:
            self.fail(self.error)
        return self.materialize(obj)

    def unpack(self, value: Any, spec: tuple[tuple[int, Any], ...]) -> list[Any]:
        """`_unpack_`: a target with a starred name (``a, *b = x``) collects items in C."""
        if self.error is not None:
            self.fail(self.error)
        items = _list(self.materialize(value))
        n = _len(items)
        for index, child in spec:
            if -n <= index < n:
                items[index] = self.unpack(items[index], child)
        return items

    def iter_unpack(self, iterable: Any, spec: tuple[tuple[int, Any], ...]) -> Iterator[Any]:
        """`_iter_unpack_`: ``for a, *b in x``: each item is unpacked as in `unpack`."""
        return _map(self.unpack, self.getiter(iterable, True), repeat(spec))

    def check_hashes(self, keys: Any, pairs: bool = False) -> Any:
        """`keys` (a materialized list; with `pairs`, of key-value pairs), refused if building
        a set or dict from it in C would be quadratic (see `COLLISION_LIMIT`)."""
        if _len(keys) <= COLLISION_LIMIT:
            return keys
        try:
            items = _list(_map(_first, keys)) if pairs else keys
            hashes = _list(_map(hash, items))
        except (TypeError, IndexError, KeyError):
            return keys  # the constructor raises its own error for these
        counts = Counter(hashes)
        if _max(counts.values()) <= COLLISION_LIMIT:
            return keys
        big = {h for h, m in counts.items() if m > COLLISION_LIMIT}
        first = _dict(_zip(reversed(hashes), reversed(items), strict=True))  # hash -> 1st item
        chosen = _list(_map(big.__contains__, hashes))
        if not _all(
            _map(
                operator.eq,
                compress(items, chosen),
                _map(first.__getitem__, compress(hashes, chosen)),
            )
        ):
            self.fail(
                LimitExceeded(
                    f"more than {COLLISION_LIMIT} distinct keys share one hash value: building a "
                    "set or dict of them takes quadratic time in one step",
                    "time",
                )
            )
        return keys

    # -- tuples: depth and expanded size ------------------------------------------------------

    def tuple_(self, *items: Any) -> tuple[Any, ...]:
        """`_tuple_`: a tuple display with a non-constant element."""
        for item in items:
            if _type(item) is tuple:
                self._measure(items)
                break
        return items

    def check_tuple(self, value: Any) -> Any:
        """A tuple built in C from query values (zip, enumerate, items, tuple()): measure it."""
        if _type(value) is tuple:
            if _len(value) <= 8:
                for item in value:
                    if _type(item) is tuple:
                        self._measure(value)
                        break
            elif tuple in _set(_map(_type, value)):
                self._measure(value)
        return value

    def varargs(self, args: tuple[Any, ...]) -> bool:
        """`_args_`: ``def f(*a)`` packs its arguments in a tuple; the rewrite calls this first."""
        self.check_tuple(args)
        return True

    def _measure(self, root: tuple[Any, ...]) -> tuple[int, int]:
        """(depth, expanded size) of `root`; tuples holding tuples are memoised by id."""
        memo = self._tuples
        stack = [root]
        while stack:
            node = stack[-1]
            if id(node) in memo:
                stack.pop()
                continue
            depth, size, pending = 1, _len(node), []
            for child in node:
                if _type(child) is tuple:
                    known = memo.get(id(child)) or _flat(child)
                    if known is None:
                        pending.append(child)  # a tuple cannot hold itself: no cycle here
                    else:
                        depth = _max(depth, known[0] + 1)
                        size += known[1]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if depth > MAX_TUPLE_DEPTH:
                self.refuse(
                    f"tuples nested more than {MAX_TUPLE_DEPTH} deep are refused "
                    "(hashing them would overflow the C stack)"
                )
            if size > self.max_size:
                self.too_big("a tuple whose nested tuples expand to", size)
            memo[id(node)] = (depth, size)
            self._keep.append(node)
        return memo[id(root)]

    # -- arithmetic priced before it runs -----------------------------------------------------

    def mul(self, a: Any, b: Any) -> Any:
        """`_mul_`: ``a * b`` when the compiler could not prove both are small numbers."""
        if self.error is not None:
            self.fail(self.error)
        self._price_mul(a, b)
        return a * b

    def _price_mul(self, a: Any, b: Any) -> None:
        if _isinstance(a, int):
            if _isinstance(b, int):
                bits = a.bit_length() + b.bit_length()
                if bits > self.max_bits:
                    self.too_big("an int (bits/8)", bits // 8)
            elif _isinstance(b, _SEQUENCES) and a > 0 and _len(b) * a > self.max_size:
                self.too_big(f"a repeated {_type(b).__name__}", _len(b) * a)
        elif (
            _isinstance(b, int)
            and _isinstance(a, _SEQUENCES)
            and b > 0
            and _len(a) * b > self.max_size
        ):
            self.too_big(f"a repeated {_type(a).__name__}", _len(a) * b)

    def pow(self, a: Any, b: Any) -> Any:
        """`_pow_`: ``a ** b``; an int result needs about ``a.bit_length() * b`` bits."""
        if self.error is not None:
            self.fail(self.error)
        if _isinstance(a, int) and _isinstance(b, int) and b > 0 and (a > 1 or a < -1):
            bits = a.bit_length() * b
            if bits > self.max_bits:
                self.too_big("an int (bits/8)", bits // 8)
        return a**b

    def lshift(self, a: Any, b: Any) -> Any:
        """`_lshift_`: ``a << b`` has ``a.bit_length() + b`` bits."""
        if self.error is not None:
            self.fail(self.error)
        if _isinstance(a, int) and _isinstance(b, int) and a and b > 0:
            bits = a.bit_length() + b
            if bits > self.max_bits:
                self.too_big("an int (bits/8)", bits // 8)
        return a << b

    def mod(self, a: Any, b: Any) -> Any:
        """`_mod_`: ``a % b``; on str/bytes that is printf formatting, priced first."""
        if self.error is not None:
            self.fail(self.error)
        if _type(a) is str and _type(b) in _ONE_ARG and _one_conversion(a):
            # 'user%d' % i, the common case, priced in C: the text of an int is at most
            # CPython's 4300 digits (int_max_str_digits) plus a sign, of a float fewer.
            if _len(a) + (_len(b) if _type(b) is str else 4301) <= self.max_size:
                return a % b
        if _isinstance(a, (str, bytes)):
            self._price_printf(a, b)
        return a % b

    def _price_printf(self, fmt: str | bytes, args: Any) -> None:
        """Estimate the length of ``fmt % args`` (widths, precisions, converted args)."""
        pattern = _PRINTF_STR if _isinstance(fmt, str) else _PRINTF_BYTES
        percent = "%" if _isinstance(fmt, str) else b"%"
        values = args if _type(args) is tuple else (args,)
        total, pos, index = _len(fmt), 0, 0
        try:
            while True:
                pos = fmt.find(percent, pos)  # type: ignore[arg-type]
                if pos < 0:
                    return
                match = pattern.match(fmt, pos)  # type: ignore[arg-type]
                if match is None:
                    return  # an incomplete format: the real formatting raises ValueError
                pos = match.end()
                conv = match["conv"]
                if conv in ("%", b"%"):
                    continue
                for part in (match["width"], match["prec"]):
                    if part in ("*", b"*"):
                        total += _max(_int(values[index]), 0)
                        index += 1
                    elif part:
                        total += _int(part)
                key = match["key"]
                if key is not None:
                    arg = args[key if _isinstance(key, str) else key.decode("latin-1")]
                else:
                    arg = values[index]
                    index += 1
                total += self.text_size(arg, "r" if conv in ("r", "a", b"r", b"a") else "s")
                if total > self.max_size:
                    self.too_big("a formatted string", total)
        except (IndexError, KeyError, TypeError, ValueError):
            return  # mismatched arguments: the real formatting raises the right error

    # -- text: str(), repr(), f-strings -------------------------------------------------------

    def text_size(self, obj: Any, kind: str = "s", limit: int | None = None) -> int:
        """An upper estimate of ``len(str(obj))`` (or repr), walking at most `limit` units."""
        return self._text_walk(obj, kind, self.max_size if limit is None else limit)[0]

    def _text_walk(self, obj: Any, kind: str, limit: int) -> tuple[int, bool]:
        """(estimated length of the text of `obj`, whether it holds only data).

        A walk, not a conversion: a list holding one 10 MB string a million times, or lists
        nested as a DAG (``a = [a, a]`` forty times), take little memory but enormous text. The
        walk stops as soon as the estimate passes `limit` (each container visit adds to it, so
        a DAG cannot keep it walking).
        """
        total, data, stack = 0, True, [obj]
        quote = 1 if kind == "s" else 4  # repr of a str escapes a byte into up to four chars
        while stack:
            item = stack.pop()
            cls = _type(item)
            if cls is str:
                total += quote * _len(item) + 2
            elif cls is bytes:
                total += 4 * _len(item) + 3
            elif cls is int or cls is bool:
                total += item.bit_length() // 3 + 2
            elif cls in _SCALARS or cls is range:
                total += 32
            elif cls in _SIZED or self._sized(cls):
                total += 2 + 2 * _len(item)
                if total > limit:
                    return total, data
                if _isinstance(item, dict):
                    stack.extend(item.keys())
                    stack.extend(item.values())
                else:
                    stack.extend(item.view if cls is ItemsView else item)
            elif _isinstance(item, BaseException):
                total += 16
                stack.extend(item.args)
            else:
                total += 64
                data = data and cls.__name__ == "File" and cls.__module__ == "pyzdb.values"
            quote = 4  # inside a container every str is shown with repr
            if total > limit:
                return total, data
        return total, data

    def to_text(self, obj: Any, kind: str = "s") -> str:
        """str/repr/ascii of `obj`, refused when it would pass `max_size`.

        Objects that are not data (functions, iterators, methods) show as ``<type>``: CPython's
        own repr would print their address, which helps an attacker defeat ASLR.
        """
        cls = _type(obj)
        if cls is str and kind == "s":
            return obj  # type: ignore[no-any-return]
        size, data = self._text_walk(obj, kind, self.max_size)
        if size > self.max_size:
            self.too_big("a string", size)
        if not data:
            return f"<{cls.__name__}>"
        show = _str if kind == "s" else _repr if kind == "r" else ascii
        return show(obj)

    def is_data(self, obj: Any, limit: int) -> bool:
        """Whether the text of `obj` is at most `limit` long and shows only data."""
        size, data = self._text_walk(obj, "r", limit)
        return data and size <= limit

    def fmtval(self, value: Any, conversion: int, spec: str | None) -> str:
        """`_fmtval_`: one ``{value!conversion:spec}`` of an f-string."""
        if self.error is not None:
            self.fail(self.error)
        if conversion != -1:
            value = self.to_text(value, chr(conversion))
        if not spec:
            return self.to_text(value)
        for digits in _DIGITS.findall(spec):
            if _len(digits) > 9 or _int(digits) > self.max_size:
                self.too_big("a formatted field", _int(digits[:12]))
        if _isinstance(value, int) and value.bit_length() > self.max_size:
            self.too_big("a formatted int", value.bit_length())
        return format(value, spec)

    def fstr(self, *parts: str) -> str:
        """`_fstr_`: an f-string's pieces, joined once their total length is known."""
        total = _sum(_map(_len, parts))
        if total > self.max_size:
            self.too_big("an f-string", total)
        return "".join(parts)

    # -- the other guards -----------------------------------------------------------------------

    def getattr(self, obj: Any, name: str) -> Any:
        """`_getattr_`: only the names of `ATTRIBUTES` for the object's exact (data) type."""
        if self.error is not None:
            self.fail(self.error)
        cls = _type(obj)
        table = _METHODS.get(cls)
        if table is None:
            table = _subclass_table(cls)
            if table is None:  # a function, type, generator, exception...: nothing at all
                self.refuse(
                    f"attributes of {cls.__name__} objects are not accessible (tried {name!r})"
                )
        how = table.get(name, _MISSING)
        if how is None:
            return getattr(obj, name)
        if how is _MISSING:
            if hasattr(cls, name):
                self.refuse(f"attribute {name!r} of {cls.__name__} is not allowed")
            raise AttributeError(f"{cls.__name__!r} object has no attribute {name!r}")
        return how(self, obj)

    def write(self, obj: Any) -> Any:
        """`_write_`: ``obj[k] = v`` and ``del obj[k]``: only dicts and lists.

        The store's containers record their own effects and refuse writes in a read-only query;
        this guard hands them back unchanged.
        """
        if self.error is not None:
            self.fail(self.error)
        if not _isinstance(obj, (dict, list)):
            if _type(obj) in _IMMUTABLE:
                raise TypeError(f"{_type(obj).__name__!r} object does not support item assignment")
            self.refuse(f"cannot assign to items of a {_type(obj).__name__}")
        return obj

    def setslice(self, container: Any, key: Any, value: Any) -> None:
        """`_setslice_`: ``l[i:j] = value`` assigns from an iterable that CPython reads in C.

        Only lists take a slice: a slice as a dict key (hashable from Python 3.12) would later
        come back from iteration as a slice object the compiler never saw.
        """
        if self.error is not None:
            self.fail(self.error)
        if _isinstance(container, dict):
            self.refuse("a slice cannot be a dict key in a query")
        self.write(container)[key] = self.materialize(value)

    def apply(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`_apply_`: a call with ``*args``/``**kwargs`` (the star operand went through
        `starred` already)."""
        if self.error is not None:
            self.fail(self.error)
        return func(*args, **kwargs)

    def catch(self, thunk: Callable[[], Any]) -> Any:
        """`_catch_`: evaluates an ``except`` clause's classes after re-raising a pending stop.

        The class expression runs inside a lambda only now, so an expression that raises (an
        undefined name) cannot replace a `Stop` that is passing through.
        """
        if self.error is not None:
            self.fail(self.error)
        spec = thunk()
        if _type(spec) is tuple:
            if _all(_type(c) is type and c in _CATCHABLE for c in spec):
                return spec
        elif _type(spec) is type and spec in _CATCHABLE:
            return spec
        raise TypeError(
            "catching classes that do not inherit from BaseException is not "
            "allowed (a query may catch the built-in exception classes only)"
        )

    def inplace(self, op: str, x: Any, y: Any) -> Any:
        """`_inplacevar_`: ``x op= y`` for a name, with the sizes of `mul`/`pow` and friends.

        A list grows with ``x.extend`` / ``x.__imul__`` and a dict with ``x.update``, so the
        store's tracked containers (which override them) record the change.
        """
        if self.error is not None:
            self.fail(self.error)
        if op == "+=":
            if _isinstance(x, list):
                self._method(x, "extend")(y)
                return x
            if (
                _isinstance(x, _SEQUENCES)
                and _isinstance(y, _SEQUENCES)
                and _len(x) + _len(y) > self.max_size
            ):
                self.too_big(f"a {_type(x).__name__}", _len(x) + _len(y))
            return x + y
        if op == "*=":
            if _isinstance(x, list) and _isinstance(y, int):
                self._price_mul(x, y)
                return x.__imul__(y)
            return self.mul(x, y)
        if op == "|=" and _isinstance(x, dict):
            self._method(x, "update")(y)
            return x
        if op == "**=":
            return self.pow(x, y)
        if op == "<<=":
            return self.lshift(x, y)
        if op == "%=":
            return self.mod(x, y)
        return _INPLACE[op](x, y)

    def augitem(self, container: Any, key: Any, op: str, value: Any) -> None:
        """`_augitem_`: ``c[k] op= v`` with `c` and `k` evaluated once.

        Reads ``c[k]``, applies `inplace`, and writes back through the normal item write. The
        write is skipped when the item is the very list/dict it was (``+=`` on a stored list
        extends it), so the store records the extend rather than a copy of the whole list; a
        slice is a copy, so it is always written back.
        """
        old = container[key]
        new = self.inplace(op, old, value)
        if new is not old or _type(key) is slice or not _isinstance(container, (dict, list)):
            self.write(container)[key] = new

    def _method(self, obj: Any, name: str) -> Any:
        return _METHODS[dict if _isinstance(obj, dict) else list][name](self, obj)

    # -- size-priced methods (returned by getattr) ---------------------------------------------

    def m_join(self, sep: Any) -> Callable[[Iterable[Any]], Any]:
        def join(iterable: Iterable[Any], /) -> Any:
            items = self.materialize(iterable)
            try:
                total = _sum(_map(_len, items)) + _len(sep) * _max(_len(items) - 1, 0)
            except TypeError:
                return sep.join(items)  # a non-str item: join raises before it allocates
            if total > self.max_size:
                self.too_big(f"a joined {_type(sep).__name__}", total)
            return sep.join(items)

        return join

    def m_replace(self, text: Any) -> Callable[..., Any]:
        def replace(old: Any, new: Any, count: int = -1, /) -> Any:
            try:
                n = text.count(old)
                growth = _len(new) - _len(old)
            except TypeError:
                return text.replace(old, new, count)
            if _isinstance(count, int) and count >= 0:
                n = _min(n, count)
            if growth > 0 and _len(text) + n * growth > self.max_size:
                self.too_big(f"a replaced {_type(text).__name__}", _len(text) + n * growth)
            return text.replace(old, new, count)

        return replace

    def _padder(self, text: Any, name: str) -> Callable[..., Any]:
        method = getattr(text, name)

        def pad(width: Any, *fill: Any) -> Any:
            if _isinstance(width, int) and width > self.max_size:
                self.too_big(f"a padded {_type(text).__name__}", width)
            return method(width, *fill)

        pad.__name__ = pad.__qualname__ = name
        return pad

    def m_center(self, text: Any) -> Callable[..., Any]:
        return self._padder(text, "center")

    def m_ljust(self, text: Any) -> Callable[..., Any]:
        return self._padder(text, "ljust")

    def m_rjust(self, text: Any) -> Callable[..., Any]:
        return self._padder(text, "rjust")

    def m_zfill(self, text: Any) -> Callable[..., Any]:
        return self._padder(text, "zfill")

    def m_expandtabs(self, text: Any) -> Callable[..., Any]:
        def expandtabs(tabsize: int = 8) -> Any:
            tab = "\t" if _isinstance(text, str) else b"\t"
            if _isinstance(tabsize, int):
                size = _len(text) + text.count(tab) * _max(tabsize, 0)
                if size > self.max_size:
                    self.too_big(f"an expanded {_type(text).__name__}", size)
            return text.expandtabs(tabsize)

        return expandtabs

    def m_encode(self, text: str) -> Callable[..., bytes]:
        def encode(encoding: str = "utf-8", errors: str = "strict") -> bytes:
            check_codec(encoding, errors)
            return self._sized_bytes(text.encode(encoding, errors))

        return encode

    def _sized_bytes(self, data: bytes) -> bytes:
        # The allowed codecs give at most 4 bytes a character, so the result is priced after
        # the fact: pricing first would refuse a long ASCII text that encodes 1:1.
        if _len(data) > self.max_size:
            self.too_big("an encoded bytes", _len(data))
        return data

    def m_decode(self, data: bytes) -> Callable[..., str]:
        def decode(encoding: str = "utf-8", errors: str = "strict") -> str:
            check_codec(encoding, errors)
            return data.decode(encoding, errors)

        return decode

    def m_extend(self, lst: list[Any]) -> Callable[[Iterable[Any]], None]:
        method = lst.extend  # the store's TrackedList.extend records the effect

        def extend(iterable: Iterable[Any], /) -> None:
            items = self.materialize(iterable)
            if _len(lst) + _len(items) > self.max_size:
                self.too_big("a list", _len(lst) + _len(items))
            method(items)

        return extend

    def m_update(self, d: dict[Any, Any]) -> Callable[..., None]:
        method = d.update

        def update(other: Any = (), /, **kwargs: Any) -> None:
            if not hasattr(other, "keys"):
                other = self.check_hashes(self.materialize(other), pairs=True)
            size = _len(d) + _len(other) + _len(kwargs)
            if size > self.max_size:
                self.too_big("a dict", size)
            method(other, **kwargs)

        return update

    def m_items(self, d: dict[Any, Any]) -> Callable[[], ItemsView]:
        return lambda: ItemsView(d.items(), self)

    def m_popitem(self, d: dict[Any, Any]) -> Callable[[], Any]:
        method = d.popitem
        return lambda: self.check_tuple(method())

    def _iterable_args(self, obj: Any, name: str) -> Callable[..., Any]:
        method = getattr(obj, name)

        def call(*others: Any) -> Any:
            return method(*(self.check_hashes(self.materialize(other)) for other in others))

        call.__name__ = call.__qualname__ = name
        return call

    # -- the fresh globals of one request -----------------------------------------------------

    def make_globals(self) -> dict[str, Any]:
        """The guard names the compiled code refers to, and the builtins table."""
        return {
            "__builtins__": BUILTINS,
            "__name__": "pyzdb.query",
            "_getattr_": self.getattr,
            "_getitem_": operator.getitem,  # reads of data are safe: C speed, CPython's errors
            "_write_": self.write,
            "_getiter_": self.getiter,
            "_iter_unpack_": self.iter_unpack,
            "_unpack_": self.unpack,
            "_inplacevar_": self.inplace,
            "_augitem_": self.augitem,
            "_apply_": self.apply,
            "_starred_": self.starred,
            "_setslice_": self.setslice,
            "_mul_": self.mul,
            "_mod_": self.mod,
            "_pow_": self.pow,
            "_lshift_": self.lshift,
            "_tuple_": self.tuple_,
            "_args_": self.varargs,
            "_fstr_": self.fstr,
            "_fmtval_": self.fmtval,
            "_catch_": self.catch,
            "_slice_": slice,
            "_type_": _type,
            "_int_": int,
            "_float_": float,
        }


def _flat(value: tuple[Any, ...]) -> tuple[int, int] | None:
    """(1, len) for a short tuple of non-tuples (not worth memoising), else None."""
    if _len(value) > 32:
        return None
    for item in value:
        if _type(item) is tuple:
            return None
    return 1, _len(value)


def check_codec(encoding: Any, errors: Any) -> None:
    """Refuse codecs and error handlers outside `ENCODINGS`/`ERROR_HANDLERS`."""
    if not (_isinstance(encoding, str) and encoding.lower() in ENCODINGS):
        raise SecurityError(
            f"encoding {encoding!r} is not available in a query "
            f"(use one of {', '.join(sorted(ENCODINGS))})"
        )
    if errors not in ERROR_HANDLERS:
        raise SecurityError(
            f"error handler {errors!r} is not available in a query (use strict, ignore or replace)"
        )


_statm: tuple[int, int] | None = None  # (pid, fd) of /proc/self/statm, reopened after a fork


def resident_memory() -> int:
    """Resident set size of this process in bytes (Linux), or its peak elsewhere."""
    global _statm
    pid = os.getpid()
    try:
        if _statm is None or _statm[0] != pid:
            _statm = (pid, os.open("/proc/self/statm", os.O_RDONLY))
        return _int(os.pread(_statm[1], 64, 0).split()[1]) * _PAGE
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


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}

#: Per type: attribute name -> None (hand out ``getattr(obj, name)``) or a `Request` method that
#: builds a size-priced replacement.
_METHODS: dict[type, dict[str, Any]] = {
    cls: dict.fromkeys(names) for cls, names in ATTRIBUTES.items()
}
for _cls in (str, bytes):
    for _name in ("join", "replace", "center", "ljust", "rjust", "zfill", "expandtabs"):
        _METHODS[_cls][_name] = getattr(Request, f"m_{_name}")
_METHODS[str]["encode"] = Request.m_encode
_METHODS[str].update(format=format_method, format_map=format_map_method)  # see strformat
_METHODS[bytes]["decode"] = Request.m_decode
_METHODS[list]["extend"] = Request.m_extend
_METHODS[dict].update(update=Request.m_update, items=Request.m_items, popitem=Request.m_popitem)
for _cls in (set, frozenset):
    for _name in ATTRIBUTES[_cls]:
        if _name not in ("add", "clear", "copy", "discard", "pop", "remove"):
            _METHODS[_cls][_name] = lambda request, obj, name=_name: request._iterable_args(
                obj, name
            )
_FILE_METHODS = dict.fromkeys(FILE_ATTRIBUTES)
# Data the query holds but whose attributes it does not need: an unknown name is still an
# AttributeError, as in Python (``db['missing_value'].upper()`` on a None).
for _cls in (_DICT_KEYS, _DICT_VALUES, ItemsView, Checked):
    _METHODS[_cls] = {}


def _subclass_table(cls: type) -> dict[str, Any] | None:
    """The table of a subclass the engine hands out: the store's tracked dict/list, a File."""
    for base in (dict, list):
        if issubclass(cls, base):
            _METHODS[cls] = _METHODS[base]
            return _METHODS[base]
    if cls.__name__ == "File" and cls.__module__ == "pyzdb.values":
        _METHODS[cls] = _FILE_METHODS
        return _FILE_METHODS
    return None


# -- builtins ------------------------------------------------------------------------------------
#
# Left out on purpose, with the reason:
#   object, super, getattr, setattr, delattr, hasattr, vars, dir, globals, locals
#                     reach classes, namespaces and attributes the guards would not see
#                     (`type` is added by `pyzdb.sandbox.idioms`: data values only, guarded answers)
#   eval, exec, compile, __import__, open, input, breakpoint, help, exit, quit
#                     code, modules, files, the console, the process
#   print             a query has no output: it returns its result
#   id, hash          leak addresses and the process's hash secret
#   pow               three-argument pow with huge moduli runs in C for minutes; ** is guarded
#   slice             a slice object in a variable would let ``l[s] = it`` iterate in C unseen;
#                     slicing syntax covers every use
#   format, ascii, callable, issubclass, memoryview, bytearray, classmethod, staticmethod,
#   property, complex, aiter, anext
#                     not needed by queries; f-strings cover format and ascii
#   BaseException, SystemExit, KeyboardInterrupt, GeneratorExit, MemoryError
#                     see EXCEPTIONS
#   True, False, None are keywords and need no entry.

#: Used as they are: none iterates a query value or builds anything large.
PLAIN_BUILTINS: dict[str, Any] = {
    "len": len,
    "abs": abs,
    "bool": bool,
    "float": float,
    "chr": chr,
    "ord": ord,
    "divmod": divmod,
    "next": next,
    "reversed": reversed,
    **{cls.__name__: cls for cls in EXCEPTIONS},
}


_current = threading.local()


def activate(request: Request | None) -> Request | None:
    """Make `request` the one the builtins of this thread charge; returns the previous one.

    The builtins table is built once and shared (a query cannot reach it: ``__builtins__``
    is a refused name), so its functions find their request here, per thread.
    """
    previous = getattr(_current, "request", None)
    _current.request = request
    return previous


def _request() -> Request:
    return _current.request  # type: ignore[no-any-return]


#: The request the builtins of this thread charge (for builtins defined outside this module).
current_request = _request


def _make_builtins() -> dict[str, Any]:
    """The wrapped builtins: each bounds its input through the current `Request`."""

    def sorted(iterable: Iterable[Any], /, *, key: Any = None, reverse: bool = False) -> Any:
        return _sorted(_request().materialize(iterable), key=key, reverse=reverse)

    def sum(iterable: Iterable[Any], /, start: Any = 0) -> Any:
        return _guarded_sum(_request(), iterable, start)

    def min(*args: Any, **kwargs: Any) -> Any:
        if _len(args) == 1:
            args = (_request().consume(args[0]),)
        return _min(*args, **kwargs)

    def max(*args: Any, **kwargs: Any) -> Any:
        if _len(args) == 1:
            args = (_request().consume(args[0]),)
        return _max(*args, **kwargs)

    def any(iterable: Iterable[Any], /) -> bool:
        return _any(_request().getiter(iterable))

    def all(iterable: Iterable[Any], /) -> bool:
        return _all(_request().getiter(iterable))

    def enumerate(iterable: Iterable[Any], start: int = 0) -> Checked:
        request = _request()
        return Checked(
            _enumerate(request.getiter(iterable), start),
            request.check_tuple,
            _nest_depth((iterable,)),
        )

    def zip(*iterables: Iterable[Any], strict: bool = False) -> Checked:
        request = _request()
        return Checked(
            _zip(*_map(request.getiter, iterables), strict=strict),
            request.check_tuple,
            _nest_depth(iterables),
        )

    def map(function: Any, iterable: Iterable[Any], /, *iterables: Iterable[Any]) -> Any:
        getiter = _request().getiter
        return _nested(
            _NMap(function, getiter(iterable), *_map(getiter, iterables)),
            _nest_depth((iterable, *iterables)),
        )

    def filter(function: Any, iterable: Iterable[Any], /) -> Any:
        return _nested(_NFilter(function, _request().getiter(iterable)), _nest_depth((iterable,)))

    def iter(obj: Any, sentinel: Any = _MISSING, /) -> Iterator[Any]:
        if sentinel is _MISSING:
            if _iter(obj) is obj:  # an iterator: iter(it) is it, as in CPython; every
                return obj  # consumer (for, list(), sum()...) bounds it on its own
            return _request().lazy_iter(obj)
        return _request().lazy_iter(_iter(obj, sentinel))

    def list(iterable: Iterable[Any] = (), /) -> Any:
        return _list(_request().materialize(iterable))

    def tuple(iterable: Iterable[Any] = (), /) -> Any:
        request = _request()
        return request.check_tuple(_tuple(request.materialize(iterable)))

    def set(iterable: Iterable[Any] = (), /) -> Any:
        request = _request()
        return _set(request.check_hashes(request.materialize(iterable)))

    def frozenset(iterable: Iterable[Any] = (), /) -> Any:
        request = _request()
        return _frozenset(request.check_hashes(request.materialize(iterable)))

    def dict(*args: Any, **kwargs: Any) -> Any:
        request = _request()
        if args and not hasattr(args[0], "keys"):
            args = (request.check_hashes(request.materialize(args[0]), pairs=True), *args[1:])
        if args and _len(args[0]) + _len(kwargs) > request.max_size:
            request.too_big("a dict", _len(args[0]) + _len(kwargs))
        return _dict(*args, **kwargs)

    def bytes(source: Any = b"", encoding: Any = _MISSING, errors: Any = "strict") -> Any:
        request = _request()
        if encoding is not _MISSING:
            check_codec(encoding, errors)
            return request._sized_bytes(_bytes(source, encoding, errors))
        if _isinstance(source, _int):
            if source > request.max_size:
                request.too_big("a bytes", source)
            return _bytes(source)
        return _bytes(source if _isinstance(source, _bytes) else request.materialize(source))

    def str(object: Any = "", encoding: Any = _MISSING, errors: Any = "strict") -> Any:
        if encoding is not _MISSING:
            check_codec(encoding, errors)
            return _str(object, encoding, errors)
        return _request().to_text(object, "s")

    def repr(obj: Any, /) -> Any:
        return _request().to_text(obj, "r")

    def range(*args: Any) -> Any:
        return lazy_range(_request(), _range(*args))

    def int(x: Any = 0, /, *args: Any, **kwargs: Any) -> Any:
        if _isinstance(x, (_str, _bytes)) and _len(x) > INT_TEXT_LIMIT:
            raise ValueError(
                f"int() of a string longer than {INT_TEXT_LIMIT} characters is "
                "refused in a query (conversion is quadratic)"
            )
        return _int(x, *args, **kwargs)

    def round(number: Any, ndigits: Any = None) -> Any:
        if _isinstance(number, _int) and _isinstance(ndigits, _int) and ndigits < 0:
            request = _request()
            if -ndigits * 10 // 3 > request.max_bits:
                request.too_big("a power of ten (bits/8)", -ndigits * 10 // 24)
        return _round(number, ndigits)

    def digits(name: Any, per_bit: float, show: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def convert(x: Any, /) -> Any:
            if _isinstance(x, _int) and x.bit_length() * per_bit > _request().max_size:
                _request().too_big(f"a {name}() string", x.bit_length())
            return show(x)

        return convert

    def isinstance(obj: Any, classinfo: Any, /) -> bool:
        if _type(classinfo) is _tuple:
            classinfo = _tuple(types.get(c, c) for c in classinfo)
        else:
            classinfo = types.get(classinfo, classinfo)
        return _isinstance(obj, classinfo)

    made: dict[Any, Any] = {
        "sorted": sorted,
        "sum": sum,
        "min": min,
        "max": max,
        "any": any,
        "all": all,
        "enumerate": enumerate,
        "zip": zip,
        "map": map,
        "filter": filter,
        "iter": iter,
        "list": list,
        "tuple": tuple,
        "set": set,
        "frozenset": frozenset,
        "dict": dict,
        "bytes": bytes,
        "str": str,
        "repr": repr,
        "range": range,
        "int": int,
        "round": round,
        "bin": digits("bin", 1, bin),
        "oct": digits("oct", 1 / 3, oct),
        "hex": digits("hex", 1 / 4, hex),
        "isinstance": isinstance,
    }
    for name, function in made.items():
        function.__name__ = function.__qualname__ = name  # error messages say "sorted()"
    #: isinstance() sees the real types behind the wrappers, so isinstance(x, dict) works.
    types = {
        made[cls.__name__]: cls
        for cls in (_list, _tuple, _set, _frozenset, _dict, _bytes, _str, _range, _int)
    }
    types[made["enumerate"]] = types[made["zip"]] = Checked
    return made


#: The builtins of every query: `PLAIN_BUILTINS` plus the wrappers, shared and never mutated.
BUILTINS: dict[str, Any] = {**PLAIN_BUILTINS, **_make_builtins()}


def lazy_range(request: Request, result: range) -> range:
    """range(): a range is lazy, so building one costs nothing and is not priced as a copy;
    `materialize` prices `list(range(n))`, and iterating charges steps. One cap remains: a
    range longer than the steps budget could never be iterated to its end in a query, and a
    C-level scan of it (`1.5 in r`, `r.count(1.5)`, which the time budget cannot interrupt)
    stays within what the steps budget already allows for any iteration."""
    try:
        n = _len(result)
    except OverflowError:
        n = sys.maxsize
    if n > request.budget.steps:
        request.fail(
            LimitExceeded(
                f"query made a range of {n} items, longer than its steps budget of "
                f"{request.budget.steps} (a range is lazy, but a query could never iterate it)",
                "steps",
            )
        )
    return result


def _guarded_sum(request: Request, iterable: Iterable[Any], start: Any) -> Any:
    """sum(): sequence starts are priced and joined in one pass; numbers go in chunks.

    CPython's sum adds in one C loop that signals cannot interrupt, and an addition of two
    10 MB ints takes milliseconds: ``sum([x] * 10**6)`` would run for an hour. Chunks of 1024
    items give the time budget a chance between them, at ~1 ns per item.
    """
    if _isinstance(start, (list, tuple)):
        kind = list if _isinstance(start, list) else tuple
        items = request.materialize(iterable)
        total = _len(start)
        for item in items:
            if not _isinstance(item, kind):
                raise TypeError(
                    f"can only concatenate {kind.__name__} (not "
                    f'"{_type(item).__name__}") to {kind.__name__}'
                )
            total += _len(item)
        if total > request.max_size:
            request.too_big(f"a {kind.__name__}", total)
        return start + kind(chain.from_iterable(items))
    acc = _sum((), start)  # CPython refuses a str/bytes start even for an empty iterable
    source = _iter(request.consume(iterable))
    while True:
        chunk = _tuple(islice(source, 1024))
        if not chunk:
            return acc
        acc = _sum(chunk, acc)


__all__ = [
    "Budget",
    "Stop",
    "AsyncStop",
    "Request",
    "ItemsView",
    "Checked",
    "ATTRIBUTES",
    "ALL_ATTRIBUTES",
    "FILE_ATTRIBUTES",
    "EXCEPTIONS",
    "PLAIN_BUILTINS",
    "BUILTINS",
    "MAX_TUPLE_DEPTH",
    "activate",
    "resident_memory",
    "check_codec",
]
