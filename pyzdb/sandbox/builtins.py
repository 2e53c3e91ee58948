"""The builtins of every query: one table, built once, shared by all requests and never mutated.

RestrictedPython 9 dropped `sorted`, `tuple`, `zip` and `bytes` from its safe builtins because
they loop in C; here each builtin that iterates a query value or can build something large is a
wrapper that bounds its input through the request being evaluated (`current_request`), then
calls CPython's own builtin of the same name. The wrappers are module-level functions named
with a trailing underscore (`sorted_`), so CPython's builtins keep their own names in this
module; `GUARDED` maps each query name to its wrapper, and `tests/test_sandbox.py` runs every
wrapper against CPython's builtin on the same inputs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from typing import Any, NoReturn

from pyzdb.errors import LimitExceeded
from pyzdb.sandbox.budget import current_request
from pyzdb.sandbox.comparisons import CHEAP, CHECKED_ITEMS, cheap_to_order, sampled_small
from pyzdb.sandbox.idioms import idiom_builtins
from pyzdb.sandbox.iteration import Checked, NestedFilter, NestedMap, nest_depth, nested
from pyzdb.sandbox.kinds import EXCEPTIONS, MISSING, SIZED, sized_subclass
from pyzdb.sandbox.methods import Methods, check_codec

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
#                     see `pyzdb.sandbox.kinds.EXCEPTIONS`
#   True, False, None are keywords and need no entry.

#: Builtins a query does not have but whose names are ordinary variable names (``type``,
#: ``id``, ``open``): the compiler refuses them only when called by that name, e.g.
#: ``type(x).append``, and the table holds a stub that refuses them when called as a value.
ABSENT_CALLS = frozenset(
    {
        "id",
        "hash",
        "format",
        "pow",
        "issubclass",
        "callable",
        "ascii",
        "slice",
        "complex",
        "aiter",
        "anext",
        "open",
        "input",
        "dir",
        "object",
        "property",
        "help",
        "exit",
        "quit",
    }
)

#: Longest str/bytes `int()` accepts, whatever the base (CPython's own default
#: limit is 4300 digits; this holds even if the host raised or disabled it).
INT_TEXT_LIMIT = 5000

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


def sorted_(iterable: Iterable[Any], /, *, key: Any = None, reverse: bool = False) -> Any:
    request = current_request()
    return request.sorted_copy(list(request.materialize(iterable)), key, reverse)


def sum_(iterable: Iterable[Any], /, start: Any = 0) -> Any:
    """sum(): sequence starts are priced and joined in one pass; numbers go in chunks.

    CPython's sum adds in one C loop that signals cannot interrupt, and an addition of two
    10 MB ints takes milliseconds: ``sum([x] * 10**6)`` would run for an hour. Chunks of 1024
    items give the time budget a chance between them, at ~1 ns per item.
    """
    request = current_request()
    if isinstance(start, (list, tuple)):
        kind = list if isinstance(start, list) else tuple
        items = request.materialize(iterable)
        total = len(start)
        for item in items:
            if not isinstance(item, kind):
                raise TypeError(
                    f"can only concatenate {kind.__name__} (not "
                    f'"{type(item).__name__}") to {kind.__name__}'
                )
            total += len(item)
        if total > request.max_size:
            request.too_big(f"a {kind.__name__}", total)
        # ignore: both lists or both tuples (`kind` is the kind of `start`), a link the two
        # unions do not carry
        return start + kind(chain.from_iterable(items))  # type: ignore[operator]
    acc = sum((), start)  # CPython refuses a str/bytes start even for an empty iterable
    source = iter(request.consume(iterable))
    while True:
        chunk = tuple(islice(source, 1024))
        if not chunk:
            return acc
        acc = sum(chunk, acc)


#: Items of a lazy iterable that min()/max() take (and price) at a time.
EXTREME_CHUNK = 1024
_EXTREME_KEYWORDS = frozenset({"key", "default"})
_KEY_ONLY = frozenset({"key"})


def _extreme(pick: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """min() or max(): the items (or their keys) priced, then compared as CPython does.

    A list or tuple is read in place: its items, or the keys computed first (once an item, in
    order, as CPython calls its key), are priced as a whole (`Comparisons.price_order`; more
    than `CHECKED_ITEMS` run unpriced when a sample of them is small or there is a key
    function, security.md). With a key, the item is the first whose key is the extreme key
    (``keys.index``: the same one for any order whose comparisons are transitive). Anything
    else is read a chunk at a time (`_extreme_in_chunks`).
    """
    if len(args) == 1 and isinstance(args[0], (list, tuple)) and kwargs.keys() <= _KEY_ONLY:
        return _extreme_of(current_request(), pick, args[0], kwargs.get("key"))  # the usual
    if len(args) == 2 and not kwargs and (type(args[0]) in CHEAP or type(args[1]) in CHEAP):
        return pick(*args)  # one comparison, with a number or a text: cheap
    if not args or not kwargs.keys() <= _EXTREME_KEYWORDS or len(args) > 1 and "default" in kwargs:
        return pick(*args, **kwargs)  # nothing to iterate, or CPython's own TypeError
    request = current_request()
    source = args if len(args) > 1 else args[0]
    if not isinstance(source, (list, tuple)):
        return _extreme_in_chunks(request, pick, source, kwargs)
    if "default" in kwargs and not source:
        return kwargs["default"]
    return _extreme_of(request, pick, source, kwargs.get("key"))


def _extreme_of(request: Methods, pick: Callable[..., Any], items: Any, key: Any) -> Any:
    """min() or max() of a list or tuple that is not empty or has no default."""
    request.consume(items)
    values = items  # what is compared: the items, or their keys
    if key is not None:
        if len(items) > CHECKED_ITEMS or not items:
            return pick(items, key=key)
        values = list(map(key, items))
    n = len(values)
    try:  # numbers, the usual items or keys: cheap to compare (`cheap_to_order`), told in C
        sum(values if n <= CHECKED_ITEMS else (values[0], values[n // 2], values[-1]), 0.0)
    except (TypeError, OverflowError):
        if not cheap_to_order(values):
            request.price_order(values, False)
    extreme = pick(values)
    return extreme if key is None else items[values.index(extreme)]


def _extreme_in_chunks(
    request: Methods, pick: Callable[..., Any], source: Any, kwargs: dict[str, Any]
) -> Any:
    """min() or max() of a set, a dict, a range or an iterator: up to `CHECKED_ITEMS` + 1 items
    are read ahead; more run unpriced under the same rule as a list, else each chunk is priced.

    CPython keeps the first extreme item, comparing each next item (or its key) with it; each
    chunk starts with the extreme so far (the chunks are fresh lists), so the comparisons are
    the same, in the same order, and the key function is called once an item, in order.
    """
    key = kwargs.get("key")
    if type(source) in SIZED or sized_subclass(type(source)):
        whole = request.consume(source)
        rest = iter(source)  # iterated again in the same order
        head = list(islice(rest, CHECKED_ITEMS + 1))
    else:
        head, rest, whole = request.lazy_head(source, CHECKED_ITEMS + 1)
    if len(head) > CHECKED_ITEMS and (key is not None or sampled_small(head)):
        return pick(whole, **kwargs)
    chunks = chain((head,), iter(lambda: list(islice(rest, EXTREME_CHUNK)), []))
    best: list[Any] = []  # [the extreme so far, its key]
    for chunk in chunks:
        if not chunk:
            break
        keys = chunk if key is None else list(map(key, chunk))
        if best:
            chunk.insert(0, best[0])
            if key is not None:
                keys.insert(0, best[1])
        request.price_order(keys, False)
        extreme = pick(keys)
        best = [extreme, None] if key is None else [chunk[keys.index(extreme)], extreme]
    return best[0] if best else pick((), **kwargs)


def min_(*args: Any, **kwargs: Any) -> Any:
    return _extreme(min, args, kwargs)


def max_(*args: Any, **kwargs: Any) -> Any:
    return _extreme(max, args, kwargs)


def any_(iterable: Iterable[Any], /) -> bool:
    return any(current_request().getiter(iterable))


def all_(iterable: Iterable[Any], /) -> bool:
    return all(current_request().getiter(iterable))


def enumerate_(iterable: Iterable[Any], start: int = 0) -> Checked:
    request = current_request()
    return Checked(
        enumerate(request.getiter(iterable), start),
        request.check_tuple,
        nest_depth((iterable,)),
    )


def zip_(*iterables: Iterable[Any], strict: bool = False) -> Checked:
    request = current_request()
    return Checked(
        zip(*map(request.getiter, iterables), strict=strict),
        request.check_tuple,
        nest_depth(iterables),
    )


def map_(function: Any, iterable: Iterable[Any], /, *iterables: Iterable[Any]) -> Any:
    getiter = current_request().getiter
    return nested(
        NestedMap(function, getiter(iterable), *map(getiter, iterables)),
        nest_depth((iterable, *iterables)),
    )


def filter_(function: Any, iterable: Iterable[Any], /) -> Any:
    return nested(
        NestedFilter(function, current_request().getiter(iterable)), nest_depth((iterable,))
    )


def iter_(obj: Any, sentinel: Any = MISSING, /) -> Iterator[Any]:
    if sentinel is MISSING:
        if iter(obj) is obj:  # an iterator: iter(it) is it, as in CPython; every
            return obj  # consumer (for, list(), sum()...) bounds it on its own
        return current_request().lazy_iter(obj)
    return current_request().lazy_iter(iter(obj, sentinel))


def list_(iterable: Iterable[Any] = (), /) -> Any:
    return list(current_request().materialize(iterable))


def tuple_(iterable: Iterable[Any] = (), /) -> Any:
    request = current_request()
    return request.check_tuple(tuple(request.materialize(iterable)))


def set_(iterable: Iterable[Any] = (), /) -> Any:
    request = current_request()
    return set(request.check_hashes(request.materialize(iterable)))


def frozenset_(iterable: Iterable[Any] = (), /) -> Any:
    request = current_request()
    return frozenset(request.check_hashes(request.materialize(iterable)))


def dict_(*args: Any, **kwargs: Any) -> Any:
    request = current_request()
    if args and hasattr(args[0], "keys"):
        request.check_mapping(args[0])
    elif args:
        args = (request.check_hashes(request.materialize(args[0]), pairs=True), *args[1:])
    if args and len(args[0]) + len(kwargs) > request.max_size:
        request.too_big("a dict", len(args[0]) + len(kwargs))
    return dict(*args, **kwargs)


def bytes_(source: Any = b"", encoding: Any = MISSING, errors: Any = "strict") -> Any:
    request = current_request()
    if encoding is not MISSING:
        check_codec(encoding, errors)
        return request.sized_bytes(bytes(source, encoding, errors))
    if isinstance(source, int):
        if source > request.max_size:
            request.too_big("a bytes", source)
        return bytes(source)
    return bytes(source if isinstance(source, bytes) else request.materialize(source))


def str_(object: Any = "", encoding: Any = MISSING, errors: Any = "strict") -> Any:
    if encoding is not MISSING:
        check_codec(encoding, errors)
        return str(object, encoding, errors)
    return current_request().to_text(object, "s")


def repr_(obj: Any, /) -> Any:
    return current_request().to_text(obj, "r")


def range_(*args: Any) -> Any:
    """range(): a range is lazy, so building one costs nothing and is not priced as a copy;
    `materialize` prices `list(range(n))`, and iterating charges steps. One cap remains: a
    range longer than the steps budget could never be iterated to its end in a query, and a
    C-level scan of it (`1.5 in r`, `r.count(1.5)`, which the time budget cannot interrupt)
    stays within what the steps budget already allows for any iteration."""
    result = range(*args)
    request = current_request()
    try:
        n = len(result)
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


def int_(x: Any = 0, /, *args: Any, **kwargs: Any) -> Any:
    if isinstance(x, (str, bytes)) and len(x) > INT_TEXT_LIMIT:
        raise ValueError(
            f"int() of a string longer than {INT_TEXT_LIMIT} characters is "
            "refused in a query (conversion is quadratic)"
        )
    return int(x, *args, **kwargs)


def round_(number: Any, ndigits: Any = None) -> Any:
    if isinstance(number, int) and isinstance(ndigits, int) and ndigits < 0:
        request = current_request()
        if -ndigits * 10 // 3 > request.max_bits:
            request.too_big("a power of ten (bits/8)", -ndigits * 10 // 24)
    return round(number, ndigits)


def _digits(name: str, per_bit: float, show: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """bin(), oct(), hex(): the text of an int has `per_bit` digits a bit, priced first."""

    def convert(x: Any, /) -> Any:
        if isinstance(x, int) and x.bit_length() * per_bit > current_request().max_size:
            current_request().too_big(f"a {name}() string", x.bit_length())
        return show(x)

    return convert


def isinstance_(obj: Any, classinfo: Any, /) -> bool:
    """isinstance() sees the real types behind the wrappers, so isinstance(x, dict) works."""
    if type(classinfo) is tuple:
        classinfo = tuple(_REAL_TYPES.get(c, c) for c in classinfo)
    else:
        classinfo = _REAL_TYPES.get(classinfo, classinfo)
    return isinstance(obj, classinfo)


#: The wrapped builtins, by the name a query calls them.
GUARDED: dict[str, Callable[..., Any]] = {
    "sorted": sorted_,
    "sum": sum_,
    "min": min_,
    "max": max_,
    "any": any_,
    "all": all_,
    "enumerate": enumerate_,
    "zip": zip_,
    "map": map_,
    "filter": filter_,
    "iter": iter_,
    "list": list_,
    "tuple": tuple_,
    "set": set_,
    "frozenset": frozenset_,
    "dict": dict_,
    "bytes": bytes_,
    "str": str_,
    "repr": repr_,
    "range": range_,
    "int": int_,
    "round": round_,
    "bin": _digits("bin", 1, bin),
    "oct": _digits("oct", 1 / 3, oct),
    "hex": _digits("hex", 1 / 4, hex),
    "isinstance": isinstance_,
}
for _name, _function in GUARDED.items():
    _function.__name__ = _function.__qualname__ = _name  # error messages say "sorted()"

#: The real type behind each wrapper that stands for a type (see `isinstance_`).
_REAL_TYPES: dict[Any, type] = {
    GUARDED[cls.__name__]: cls
    for cls in (list, tuple, set, frozenset, dict, bytes, str, range, int)
}
_REAL_TYPES[GUARDED["enumerate"]] = _REAL_TYPES[GUARDED["zip"]] = Checked

#: The builtins a query calls for their result: what `pyzdb.sandbox_rules()` lists.
GUARDED_BUILTINS: dict[str, Any] = {**PLAIN_BUILTINS, **GUARDED}


def _refuse(message: str) -> NoReturn:
    current_request().refuse(message)


#: The builtins table of every query: `GUARDED_BUILTINS` plus `type`, the ``x.__name__``
#: guard and the stubs that refuse the `ABSENT_CALLS` names (`pyzdb.sandbox.idioms`).
BUILTINS: dict[str, Any] = {
    **GUARDED_BUILTINS,
    **idiom_builtins(GUARDED_BUILTINS, EXCEPTIONS, _refuse, ABSENT_CALLS),
}


__all__ = [
    "ABSENT_CALLS",
    "INT_TEXT_LIMIT",
    "PLAIN_BUILTINS",
    "GUARDED",
    "GUARDED_BUILTINS",
    "BUILTINS",
]
