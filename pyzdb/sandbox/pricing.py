"""What an operation will build, priced before it runs: arithmetic, printf, tuples, hash sets.

1. No single C call builds an object larger than `max_size` (elements, characters, bytes, or
   bits/8 of an int): repetition, powers, shifts and printf widths are priced here (padding,
   joins and f-string widths in `pyzdb.sandbox.methods` and `pyzdb.sandbox.text`).
2. Tuples nest at most `MAX_TUPLE_DEPTH` deep and expand to at most `max_size` elements. CPython
   hashes a tuple by recursing in C without a depth check (~150,000 levels crash it with
   SIGSEGV) and visits shared sub-tuples once per path (a doubling loop makes a 2**60 hash); every
   place that builds a tuple holding query objects measures it first, memoised by identity.
3. A set or dict built in one C call may not hold more than `COLLISION_LIMIT` distinct keys
   under one hash value (`Shapes.check_hashes`): ``set()``, ``dict()``, ``update``, the set
   methods, and set and dict displays with a starred part (``{*a}``, ``{**d, 'k': v}``).
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from itertools import compress
from typing import Any

from pyzdb.errors import LimitExceeded
from pyzdb.sandbox.budget import Accounts
from pyzdb.sandbox.kinds import SEQUENCES
from pyzdb.sandbox.text import Text

#: Deepest tuple-in-tuple nesting a query may build. CPython hashes nested tuples recursively in
#: C with no depth check; ~150,000 levels overflow an 8 MiB stack. Stored tuples are at most
#: `pyzdb.limits.MAX_DEPTH` deep and decoded parameters are bounded by the codec's own limit.
MAX_TUPLE_DEPTH = 1000

#: Most items one C call may insert into a set or dict under a single hash value unless they
#: are all equal. Distinct keys that share a hash (ints equal modulo 2**61 - 1, tuples built
#: from them) make each insertion walk all the others: 200,000 of them took minutes in one
#: `set()` call, which no signal interrupts. Equal duplicates are cheap and allowed.
COLLISION_LIMIT = 2048

_first = operator.itemgetter(0)


class Shapes(Accounts):
    """Tuples (depth and expanded size) and hash collisions: shapes that are cheap to build
    but make CPython's own C loops crash or take quadratic time."""

    #: id -> (depth, expanded size) of tuples measured so far.
    _tuples: dict[int, tuple[int, int]]
    #: Keeps measured tuples alive, so their ids stay theirs.
    _keep: list[Any]

    def tuple_(self, *items: Any) -> tuple[Any, ...]:
        """`_tuple_`: a tuple display with a non-constant element."""
        for item in items:
            if type(item) is tuple:
                self._measure(items)
                break
        return items

    def check_tuple(self, value: Any) -> Any:
        """A tuple built in C from query values (zip, enumerate, items, tuple()): measure it."""
        if type(value) is tuple:
            if len(value) <= 8:
                for item in value:
                    if type(item) is tuple:
                        self._measure(value)
                        break
            elif tuple in set(map(type, value)):
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
            depth, size, pending = 1, len(node), []
            for child in node:
                if type(child) is tuple:
                    known = memo.get(id(child)) or _flat(child)
                    if known is None:
                        pending.append(child)  # a tuple cannot hold itself: no cycle here
                    else:
                        depth = max(depth, known[0] + 1)
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

    def check_hashes(self, keys: Any, pairs: bool = False) -> Any:
        """`keys` (a materialized list; with `pairs`, of key-value pairs), refused if building
        a set or dict from it in C would be quadratic (see `COLLISION_LIMIT`)."""
        if len(keys) <= COLLISION_LIMIT:
            return keys
        try:
            items = list(map(_first, keys)) if pairs else keys
            hashes = list(map(hash, items))
        except (TypeError, IndexError, KeyError):
            return keys  # the constructor raises its own error for these
        if len(hashes) - len(set(hashes)) < COLLISION_LIMIT:
            return keys  # no hash can be shared by more than COLLISION_LIMIT items
        counts = Counter(hashes)
        if max(counts.values()) <= COLLISION_LIMIT:
            return keys
        big = {h for h, m in counts.items() if m > COLLISION_LIMIT}
        first = dict(zip(reversed(hashes), reversed(items), strict=True))  # hash -> 1st item
        chosen = list(map(big.__contains__, hashes))
        if not all(
            map(
                operator.eq,
                compress(items, chosen),
                map(first.__getitem__, compress(hashes, chosen)),
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

    def check_mapping(self, mapping: Any) -> Any:
        """A mapping whose keys a dict is built or updated from in C (``dict(m)``,
        ``d.update(m)``): its keys are checked like `check_hashes`. A dict built one key at a
        time holds any number of colliding keys, each insertion a step of its own; copying
        them into a dict that is not empty inserts them all in one C call."""
        if len(mapping) > COLLISION_LIMIT:
            self.check_hashes(list(mapping.keys()))
        return mapping

    def set_display(self, items: list[Any]) -> set[Any]:
        """`_set_`: a set display with a starred part (``{*a, b, *c}``), from the list of its
        items, priced like ``set()`` as a whole."""
        if self.error is not None:
            self.fail(self.error)
        return set(self.check_hashes(items))

    def dict_display(self, spec: tuple[bool, ...], values: list[Any]) -> dict[Any, Any]:
        """`_dict_`: a dict display with a ``**`` part (``{**a, 'k': v, **b}``): `spec` says which
        entries are ``**`` mappings; `values` holds those mappings and the other entries' keys
        and values, in order. Every key of the display is checked as one (`check_hashes`)."""
        if self.error is not None:
            self.fail(self.error)
        parts: list[Any] = []
        keys: list[Any] = []
        entries = iter(values)
        for starred in spec:
            if starred:
                mapping = next(entries)
                if not hasattr(mapping, "keys"):
                    raise TypeError(f"{type(mapping).__name__!r} object is not a mapping")
                parts.append(mapping)
                keys += mapping.keys()
            else:
                key = next(entries)
                parts.append(((key, next(entries)),))
                keys.append(key)
        self.check_hashes(keys)
        result: dict[Any, Any] = {}
        for part in parts:
            result.update(part)
        return result


def _flat(value: tuple[Any, ...]) -> tuple[int, int] | None:
    """(1, len) for a short tuple of non-tuples (not worth memoising), else None."""
    if len(value) > 32:
        return None
    for item in value:
        if type(item) is tuple:
            return None
    return 1, len(value)


_PRINTF_STR = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d*))?[hlL]?(?P<conv>.)",
    re.S,
)
_PRINTF_BYTES = re.compile(_PRINTF_STR.pattern.encode(), re.S)
#: A format with one bare %s, %d or %i and no other %: `Arithmetic.mod` prices it without a walk.
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
        if len(fmt) <= 64:
            if len(_FORMATS) >= _FORMATS_MAX:
                _FORMATS.clear()
            _FORMATS[fmt] = known
    return known


class Arithmetic(Text):
    """`*`, `**`, `<<` and `%` when the compiler could not prove them small: priced first."""

    def mul(self, a: Any, b: Any) -> Any:
        """`_mul_`: ``a * b`` when the compiler could not prove both are small numbers."""
        if self.error is not None:
            self.fail(self.error)
        self.price_mul(a, b)
        return a * b

    def price_mul(self, a: Any, b: Any) -> None:
        """Refuse ``a * b`` if the product int or the repeated sequence passes `max_size`."""
        if isinstance(a, int):
            if isinstance(b, int):
                bits = a.bit_length() + b.bit_length()
                if bits > self.max_bits:
                    self.too_big("an int (bits/8)", bits // 8)
            elif isinstance(b, SEQUENCES) and a > 0 and len(b) * a > self.max_size:
                self.too_big(f"a repeated {type(b).__name__}", len(b) * a)
        elif (
            isinstance(b, int) and isinstance(a, SEQUENCES) and b > 0 and len(a) * b > self.max_size
        ):
            self.too_big(f"a repeated {type(a).__name__}", len(a) * b)

    def pow(self, a: Any, b: Any) -> Any:
        """`_pow_`: ``a ** b``; an int result needs about ``a.bit_length() * b`` bits."""
        if self.error is not None:
            self.fail(self.error)
        if isinstance(a, int) and isinstance(b, int) and b > 0 and (a > 1 or a < -1):
            bits = a.bit_length() * b
            if bits > self.max_bits:
                self.too_big("an int (bits/8)", bits // 8)
        return a**b

    def lshift(self, a: Any, b: Any) -> Any:
        """`_lshift_`: ``a << b`` has ``a.bit_length() + b`` bits."""
        if self.error is not None:
            self.fail(self.error)
        if isinstance(a, int) and isinstance(b, int) and a and b > 0:
            bits = a.bit_length() + b
            if bits > self.max_bits:
                self.too_big("an int (bits/8)", bits // 8)
        return a << b

    def mod(self, a: Any, b: Any) -> Any:
        """`_mod_`: ``a % b``; on str/bytes that is printf formatting, priced first."""
        if self.error is not None:
            self.fail(self.error)
        if type(a) is str and type(b) in _ONE_ARG and _one_conversion(a):
            # 'user%d' % i, the common case, priced in C: the text of an int is at most
            # CPython's 4300 digits (int_max_str_digits) plus a sign, of a float fewer.
            if len(a) + (len(b) if type(b) is str else 4301) <= self.max_size:
                return a % b
        if isinstance(a, (str, bytes)):
            self._price_printf(a, b)
        return a % b

    def _price_printf(self, fmt: str | bytes, args: Any) -> None:
        """Estimate the length of ``fmt % args`` (widths, precisions, converted args)."""
        pattern: re.Pattern[Any] = _PRINTF_STR if isinstance(fmt, str) else _PRINTF_BYTES
        percent: Any = "%" if isinstance(fmt, str) else b"%"
        values = args if type(args) is tuple else (args,)
        total, pos, index = len(fmt), 0, 0
        try:
            while True:
                pos = fmt.find(percent, pos)
                if pos < 0:
                    return
                match = pattern.match(fmt, pos)
                if match is None:
                    return  # an incomplete format: the real formatting raises ValueError
                pos = match.end()
                conv = match["conv"]
                if conv in ("%", b"%"):
                    continue
                for part in (match["width"], match["prec"]):
                    if part in ("*", b"*"):
                        total += max(int(values[index]), 0)
                        index += 1
                    elif part:
                        total += int(part)
                key = match["key"]
                if key is not None:
                    arg = args[key if isinstance(key, str) else key.decode("latin-1")]
                else:
                    arg = values[index]
                    index += 1
                total += self.text_size(arg, "r" if conv in ("r", "a", b"r", b"a") else "s")
                if total > self.max_size:
                    self.too_big("a formatted string", total)
        except (IndexError, KeyError, TypeError, ValueError):
            return  # mismatched arguments: the real formatting raises the right error


__all__ = ["MAX_TUPLE_DEPTH", "COLLISION_LIMIT", "Shapes", "Arithmetic"]
