"""What the compiler may assume about a name's value, so that comparisons with it run plain.

A comparison is priced at run time (`pyzdb.sandbox.comparisons`) only when both of its operands
may be containers. Most comparisons of an honest query have a parameter on one side
(``r['age'] > limit``, ``r['id'] in ids``) or a name the query set to a literal or a set
(``ages = set(wanted)``), and a name's value can change only where the query binds it: a query
has no ``global``, ``nonlocal`` or classes, so every binding of a name is in its text. So:

- a name the source never binds (no assignment, argument, target, ``def``...) holds, all
  through the request, the value the caller bound (`CALLER`): a parameter. Its kind,
  `kind_of`, is known before compiling: the code is compiled for those kinds, cached by them,
  and `run` checks the values against them before evaluating (`check_assumptions`);
- a name whose every binding is ``name = <literal>`` or ``name = set(...)``/``{...}``/``dict(
  ...)`` (and that the caller does not bind, nor the builtin it calls: `SOURCE`) holds a
  value of that kind, or is not bound yet (NameError).

Only comparisons in a loop, a comprehension or a function count (`facts_of`): one that runs
once is cheaper with its inline type check (~0.1 us) than known (looking the kinds up and
checking them costs ~1 us a request).

The kinds: `SMALL` (a number under 2**512, None, a bool, a float, a text shorter than 64:
compared with anything in constant time), `SCALAR` (any number or text: ``==``/``<`` with it
gives up or compares its own size at most), `FLAT` (a tuple, or a list only ever used as an
operand of comparisons, of at most `FLAT_ITEMS` small items: compared with anything in
``len`` steps; a list is handed to the query as a fresh copy, so nothing else can grow it),
`HASHED` (a set, frozenset or dict: ``x in it`` is a hash lookup).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pyzdb.errors import SecurityError
from pyzdb.sandbox.expansion import FIXED

SMALL = "small"
SCALAR = "scalar"
FLAT = "flat"
HASHED = "hashed"
#: Items of a tuple or list parameter checked for `FLAT` (a C pass per request): longer ones
#: are left to the run-time guard, whose fixed cost is then small beside the comparison.
FLAT_ITEMS = 1024
#: Ints strictly between its negative and itself are `SMALL` (under 512 bits).
_SMALL_INT = 1 << 511
#: Builtins whose call makes a `HASHED` value, when the query does not rebind them.
_HASHING_CALLS = frozenset({"set", "frozenset", "dict"})
#: A name the caller binds (its kind is the value's) / that only the source binds.
CALLER, SOURCE = True, False
#: One assumption of a compiled request: (name, kind or None, who binds it). (name, None,
#: SOURCE) says only that the caller binds no such name (a builtin the source relies on).
Assumption = tuple[str, "str | None", bool]


def kind_of(value: Any, may_be_list: bool = False) -> str | None:
    """The kind of a value the caller binds, or None when comparing it may walk a container.

    >>> kind_of(3), kind_of("x" * 64), kind_of((1, "a")), kind_of([1]), kind_of([1], True)
    ('small', 'scalar', 'flat', None, 'flat')
    """
    cls = type(value)
    if cls in FIXED:
        return SMALL
    if cls is int:
        return SMALL if value.bit_length() < 512 else SCALAR
    if cls is str or cls is bytes:
        return SMALL if len(value) < 64 else SCALAR
    if (cls is tuple or cls is list and may_be_list) and len(value) <= FLAT_ITEMS:
        return FLAT if _small_items(value) else None
    return None


def check_assumptions(
    assumes: tuple[Assumption, ...], scope: dict[str, Any], names: Mapping[str, Any]
) -> None:
    """Before a compiled request runs: the caller's names are of the kinds its code was
    compiled for (else `SecurityError`: compile with these names), and a list assumed `FLAT`
    is bound as a fresh copy, which nothing else refers to."""
    for name, kind, binder in assumes:
        if binder is SOURCE:
            ok = name not in names
        else:
            value = names.get(name)
            if type(value) is int and -_SMALL_INT < value < _SMALL_INT:
                ok = kind == SMALL  # the usual parameter, told without a call
            else:
                ok = kind_of(value, True) == kind
                if ok and type(value) is list:
                    scope[name] = value[:]
        if not ok:
            raise SecurityError(
                f"this request was compiled for other parameters ({name!r}): compile it with "
                "the names it runs with"
            )


def _small_items(items: Any) -> bool:
    """Whether every item is `SMALL`, in a few C passes."""
    kinds = set(map(type, items))
    if not kinds <= FIXED | {int, str, bytes}:
        return False
    try:
        return all(
            max(map(measure, items), default=0) < limit
            for measure, limit in ((_bits, 512), (_length, 64))
        )
    except TypeError:
        return False


def _bits(value: Any) -> int:
    return value.bit_length() if type(value) is int else 0


def _length(value: Any) -> int:
    return len(value) if type(value) is str or type(value) is bytes else 0


def constant_kind(node: ast.expr) -> str | None:
    """The kind of a literal operand: a constant, ``-1``, or a list, tuple or set display of
    constants (`FLAT`: built afresh each time, its items no longer than the source).

    >>> [constant_kind(ast.parse(text, mode="eval").body) for text in ("-1", "[1, 'a']", "[x]")]
    ['small', 'flat', None]
    """
    if isinstance(node, ast.Constant):
        return kind_of(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        return kind_of(node.operand.value)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        if all(constant_kind(element) in (SMALL, SCALAR) for element in node.elts):
            return FLAT
    return None


def operand_kind(node: ast.expr) -> str | None:
    """The kind of an operand by its form alone (a name: None): a literal (`constant_kind`),
    a comparison or a ``not`` (a bool), a unary ``-``/``+``/``~`` (a number: no container
    has them)."""
    if (
        isinstance(node, ast.Compare)
        or isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.Not)
    ):
        return SMALL
    kind = constant_kind(node)
    if kind is None and isinstance(node, ast.UnaryOp):
        return SCALAR
    return kind


#: Kinds that make ``==``/``<`` cheap on either side, and ``x in c`` cheap as the needle or as
#: the haystack.
_CHEAP_SIDES = frozenset({SMALL, SCALAR, FLAT})
_CHEAP_NEEDLES = frozenset({SMALL})
_CHEAP_HAYSTACKS = frozenset({FLAT, HASHED})


def cheap_pair(
    left: ast.expr, op: ast.cmpop, right: ast.expr, kind: Callable[[ast.expr], str | None]
) -> bool:
    """Whether ``left op right`` is cheap whatever the run-time values, given the `kind` of
    each operand: identity; a number, a text or a flat literal on one side of ``==``/``<``; a
    small needle, or a flat, hashed or constant haystack for ``in``.

    >>> pair = ast.parse("x in [1, 2]", mode="eval").body
    >>> cheap_pair(pair.left, pair.ops[0], pair.comparators[0], operand_kind)
    True
    """
    if isinstance(op, (ast.Is, ast.IsNot)):
        return True
    if isinstance(op, (ast.In, ast.NotIn)):
        if isinstance(right, ast.Constant):  # a text or a tuple of constants
            return True
        return kind(left) in _CHEAP_NEEDLES or kind(right) in _CHEAP_HAYSTACKS
    return kind(left) in _CHEAP_SIDES or kind(right) in _CHEAP_SIDES


@dataclass(frozen=True)
class NameFacts:
    """What the text of a query says about its names (`facts_of`)."""

    #: Names the source never binds and compares (candidates for `CALLER` assumptions), sorted.
    compared: tuple[str, ...]
    #: Of those, the names read only as operands of comparisons (a list may be `FLAT`).
    compared_only: frozenset[str]
    #: (name, kind, builtins its value needs) of the names the source binds only to one kind.
    inferred: tuple[tuple[str, str, frozenset[str]], ...]
    #: Whether there is anything to assume at all (most requests compare no name).
    relevant: bool

    def assumptions(self, names: Mapping[str, Any]) -> tuple[Assumption, ...]:
        """What may be assumed of these names when the caller binds `names`."""
        found: list[Assumption] = []
        for name in self.compared:
            if name in names:
                value = names[name]
                kind = (
                    SMALL  # the usual parameter, told without a call
                    if type(value) is int and -_SMALL_INT < value < _SMALL_INT
                    else kind_of(value, name in self.compared_only)
                )
                if kind is not None:
                    found.append((name, kind, CALLER))
        for name, kind, needs in self.inferred:
            if name not in names and not needs & names.keys():
                found.append((name, kind, SOURCE))
                found.extend((need, None, SOURCE) for need in sorted(needs))
        return tuple(found)


def facts_of(tree: ast.AST) -> NameFacts:
    """The `NameFacts` of a parsed query.

    >>> tree = ast.parse("x = 3\\ny = set(l)\\n[r for r in rows if r > x and r in y and r < z]")
    >>> facts = facts_of(tree)
    >>> sorted(facts.compared), facts.inferred[0][:2], facts.inferred[1][:2]
    (['z'], ('x', 'small'), ('y', 'hashed'))
    """
    operands: set[int] = set()  # every name that is an operand of a comparison
    compared: set[str] = set()  # the names whose kind would make a repeated comparison cheap
    for node, repeated in _nodes(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            operands.update(id(side) for side in sides if isinstance(side, ast.Name))
            for left, op, right in zip(sides, node.ops, sides[1:], strict=False):
                if repeated and not cheap_pair(left, op, right, operand_kind):
                    compared.update(n.id for n in (left, right) if isinstance(n, ast.Name))
    read_elsewhere: set[str] = set()
    bindings: dict[str, list[ast.expr | None]] = {}
    for name, value in _bindings(tree):
        bindings.setdefault(name, []).append(value)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if id(node) not in operands:
                read_elsewhere.add(node.id)
    inferred = []
    for name in compared & bindings.keys():
        kinds = {_assigned_kind(value, bindings) for value in bindings[name]}
        if len(kinds) == 1 and None not in kinds:
            kind, needs = kinds.pop()  # type: ignore[misc]
            inferred.append((name, kind, needs))
    compared -= bindings.keys()
    return NameFacts(
        tuple(sorted(compared)),
        frozenset(compared - read_elsewhere),
        tuple(sorted(inferred)),
        bool(compared or inferred),
    )


#: Nodes whose contents may run many times: loops, comprehensions, functions.
_REPEATING = (
    ast.For,
    ast.While,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.Lambda,
    ast.FunctionDef,
)


def _nodes(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node, and whether it is inside a loop, a comprehension or a function: a
    comparison that runs once is cheaper guarded (~0.1 us) than known (~1 us a request, to
    look up the kinds of the names and check them)."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, repeated = stack.pop()
        yield node, repeated
        inner = repeated or isinstance(node, _REPEATING)
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def _assigned_kind(
    value: ast.expr | None, bindings: dict[str, list[ast.expr | None]]
) -> tuple[str, frozenset[str]] | None:
    """(kind, builtins it needs) of a value a plain ``name = value`` binds, or None."""
    if value is None:
        return None
    kind = constant_kind(value)
    if kind in (SMALL, SCALAR):
        return kind, frozenset()
    if isinstance(value, (ast.Set, ast.SetComp, ast.Dict, ast.DictComp)):
        return HASHED, frozenset()
    if (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id in _HASHING_CALLS
        and value.func.id not in bindings
    ):
        return HASHED, frozenset({value.func.id})
    return None


def _bindings(tree: ast.AST) -> Iterator[tuple[str, ast.expr | None]]:
    """Every place that binds a name: (name, the value of a plain ``name = value``, or None)."""
    plain: dict[int, ast.expr] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            plain.update((id(target), node.value) for target in node.targets)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            yield node.id, plain.get(id(node))
        elif isinstance(node, ast.arg):
            yield node.arg, None
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name, None
        elif isinstance(node, ast.ExceptHandler) and node.name:
            yield node.name, None
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            yield node.name, None
        elif isinstance(node, ast.MatchMapping) and node.rest:
            yield node.rest, None
        elif isinstance(node, ast.alias):
            yield (node.asname or node.name).partition(".")[0], None
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            yield from ((name, None) for name in node.names)


__all__ = [
    "SMALL",
    "SCALAR",
    "FLAT",
    "HASHED",
    "FLAT_ITEMS",
    "CALLER",
    "SOURCE",
    "Assumption",
    "NameFacts",
    "kind_of",
    "check_assumptions",
    "constant_kind",
    "operand_kind",
    "cheap_pair",
    "facts_of",
]
