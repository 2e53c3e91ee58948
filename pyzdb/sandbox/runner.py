"""The sandbox: compile a request under pyzdb's RestrictedPython policy, then run it on a budget.

Theory of operation
-------------------
``compile_request(source, mode)``:

1. the source text itself is capped (`MAX_SOURCE`) and parsed here, never taken as an AST from a
   client: the tokenizer NFKC-normalises names, so ``ｅｖａｌ`` is ``eval``;
2. a first pass (`_check_tree`, iterative) counts nodes and depth and refuses every node type
   without an explicit rule (`_ALLOWED_NODES`), names and attributes starting with ``_``,
   attributes no data type offers, decorators, annotations, bare ``except``, ``finally``,
   class patterns, catching the BaseException family...; violations are collected with their
   line numbers and raised once, as one `SecurityError`;
3. RestrictedPython's transformer, subclassed by `_Policy`, rewrites attribute and item access,
   iteration and in-place operators into guard calls, plus pyzdb's own rewrites (size-priced
   ``*``/``%``/``**``/``<<``, ``c[k] op= v``, tuple displays, f-strings, starred operands,
   slice assignment, ``except`` clauses, ``*args``); in exec mode the last top-level expression
   statement becomes an assignment to ``_result_``;
4. the code object is cached (LRU) by ``(source, mode)``.

``run(compiled, names, budget)`` builds fresh globals (guards of a new `guards.Request`,
builtins, the caller's names), lowers the recursion limit, arms the time/memory tick (SIGALRM
in the main thread, a watchdog thread raising asynchronously otherwise), evaluates, disarms,
and turns whatever escaped into an `Exception` with a ``query line L, column C: ...`` note.
See sandbox/README.md for the threat model and every rule with its reason.
"""

from __future__ import annotations

import _signal as _signal_module  # the C functions: no enum conversion on the hot path
import ast
import copy
import ctypes
import faulthandler
import functools
import keyword
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass
from itertools import islice
from time import monotonic
from types import CodeType, TracebackType
from typing import Any, Literal

from RestrictedPython.transformer import RestrictingNodeTransformer, copy_locations

from pyzdb.errors import Error, LimitExceeded, SecurityError
from pyzdb.limits import MAX_SOURCE, QUERY_FILENAME
from pyzdb.sandbox import guards
from pyzdb.sandbox.guards import (
    ALL_ATTRIBUTES,
    AsyncStop,
    Budget,
    ItemsView,
    Request,
    Stop,
    activate,
    resident_memory,
)
from pyzdb.sandbox.idioms import idiom_builtins

#: The file name of query code objects: how a traceback frame is recognised as the query's.
#: Largest source accepted, in characters and in UTF-8 bytes. A 10 MB source took ~10 s of CPU
#: to compile; queries are expressions and short scripts, data travels as parameters.
#: Most syntax nodes, and deepest nesting, of a parsed query. Both bound the compiler's work and
#: keep RestrictedPython's recursive transformer (about four frames per level) far from the
#: interpreter's recursion limit.
MAX_NODES = 50_000
MAX_AST_DEPTH = 100
#: Frames a query may add to the stack: deep recursion raises RecursionError, not a crash.
QUERY_FRAMES = 400
#: Compiled requests kept (by source and mode): at most ~256 x 64 KiB of source, plus code.
CACHE_SIZE = 256
#: Seconds between two checks of the time and memory budgets.
TICK = 0.05
#: Longest str/bytes argument of a query's exception kept as is on its way to the caller.
ARG_LIMIT = 2000

_ALLOWED_NODES = frozenset(
    getattr(ast, name)
    for name in """
    Module Expression Expr Assign AugAssign Delete Pass Break Continue Return If For While Try
    ExceptHandler Raise Assert FunctionDef Lambda arguments arg keyword BoolOp NamedExpr BinOp
    UnaryOp IfExp Dict Set ListComp SetComp DictComp GeneratorExp comprehension Compare Call
    FormattedValue JoinedStr Constant Attribute Subscript Starred Name List Tuple Slice
    Match match_case MatchValue MatchSingleton MatchSequence MatchMapping MatchStar MatchAs MatchOr
    Load Store Del And Or Add Sub Mult MatMult Div Mod Pow LShift RShift BitOr BitXor BitAnd
    FloorDiv Invert Not UAdd USub Eq NotEq Lt LtE Gt GtE Is IsNot In NotIn
""".split()
)

_ASYNC = "async code is not allowed: coroutines expose frames (cr_frame) and need a loop"
_YIELD = (
    "yield is not allowed: generator functions expose frames and run code when closed "
    "(generator expressions are fine)"
)
#: Why the common refused nodes are refused; any other unknown node gets a generic message.
_REFUSED = {
    "Import": "import is not allowed: a query sees its data and the builtins, nothing else",
    "ImportFrom": "import is not allowed: a query sees its data and the builtins, nothing else",
    "ClassDef": "class definitions are not allowed: classes reach type objects and metaclasses",
    "Global": "global is not allowed: a query's names stay in the query",
    "Nonlocal": "nonlocal is not allowed",
    "With": "with is not allowed: a context manager's __exit__ could swallow the sandbox's stop",
    "AsyncWith": _ASYNC,
    "AsyncFor": _ASYNC,
    "AsyncFunctionDef": _ASYNC,
    "Await": _ASYNC,
    "Yield": _YIELD,
    "YieldFrom": _YIELD,
    "TryStar": "try/except* is not allowed (exception groups confuse exception types)",
    "AnnAssign": "annotations are not allowed",
    "MatchClass": "class patterns are not allowed: they run isinstance and __match_args__ on "
    "arbitrary classes",
}
#: Names a query may not bind or read: RestrictedPython rewrites print into its own collector.
_RESERVED_NAMES = frozenset({"print", "printed", "builtins", "breakpoint"})
#: The BaseException family: not builtins of a query, and refused by name so that neither
#: ``raise SystemExit`` nor ``except BaseException`` gets as far as a NameError.
_BASE_EXCEPTIONS = frozenset(
    {"BaseException", "SystemExit", "KeyboardInterrupt", "GeneratorExit", "BaseExceptionGroup"}
)
#: Builtins a query does not have whose only use is an escape: refused wherever they appear.
_ESCAPE_NAMES = frozenset(
    {
        "getattr",
        "setattr",
        "delattr",
        "hasattr",
        "eval",
        "exec",
        "compile",
        "globals",
        "locals",
        "vars",
        "super",
        "memoryview",
        "bytearray",
        "classmethod",
        "staticmethod",
    }
)
#: Builtins a query does not have but whose names are ordinary variable names (``type``,
#: ``id``, ``open``): refused only when called by that name, e.g. ``type(x).append``.
_ABSENT_CALLS = frozenset(
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
#: `type` (for data values) and stubs that refuse the absent names however they are reached.
guards.BUILTINS.update(
    idiom_builtins(
        guards.BUILTINS,
        guards.EXCEPTIONS,
        lambda message: guards.current_request().refuse(message),
        _ABSENT_CALLS,
    )
)


@dataclass(frozen=True, eq=False)
class Compiled:
    """A request that passed the policy: its code object, ready for `run` (any number of times)."""

    source: str
    mode: Literal["eval", "exec"]
    code: CodeType


def compile_request(source: str, mode: Literal["eval", "exec"]) -> Compiled:
    """Compile `source` in `mode` under the policy, or raise SyntaxError / SecurityError.

    Cached by ``(source, mode)``: compiling costs several times the evaluation of a small query.
    SyntaxError covers text that is not Python; SecurityError lists every rule the text breaks,
    each with its line. Nothing else escapes, whatever the text.
    """
    if mode not in ("eval", "exec"):
        raise ValueError(f"mode must be 'eval' or 'exec', not {mode!r}")
    if type(source) is not str:
        raise TypeError(f"query source must be str, not {type(source).__name__}")
    return _compile(source, mode)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compile(source: str, mode: Literal["eval", "exec"]) -> Compiled:
    if len(source) > MAX_SOURCE:
        raise SecurityError(
            f"query source is {len(source)} characters, over the limit of "
            f"{MAX_SOURCE}; send data as parameters"
        )
    try:
        size = len(source.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise SyntaxError(
            f"query source is not valid Unicode text: {exc.reason} at character {exc.start}"
        ) from None
    if size > MAX_SOURCE:
        raise SecurityError(f"query source is {size} bytes, over the limit of {MAX_SOURCE}")
    try:
        tree = ast.parse(source, QUERY_FILENAME, mode)
    except SyntaxError as exc:
        raise _clean_syntax_error(exc) from None
    except (MemoryError, RecursionError):
        raise SecurityError("query source is nested too deeply to parse") from None
    except (ValueError, TypeError, OverflowError) as exc:  # null bytes, huge literals...
        raise SyntaxError(f"query source cannot be parsed: {exc}") from None
    problems = _check_tree(tree)
    if problems:
        raise SecurityError(_refusal(problems))
    policy = _Policy()
    try:
        tree = policy.visit(tree)
    except (RecursionError, MemoryError):
        raise SecurityError("query is nested too deeply to compile") from None
    if policy.errors:
        raise SecurityError(_refusal(policy.errors))
    if mode == "exec":
        _capture_last_expression(tree)
    ast.fix_missing_locations(tree)
    try:
        code = compile(tree, QUERY_FILENAME, mode, dont_inherit=True)
    except SyntaxError as exc:  # 'return' outside function and the like
        raise _clean_syntax_error(exc) from None
    except (RecursionError, MemoryError, ValueError, TypeError, OverflowError) as exc:
        raise SecurityError(f"query could not be compiled: {type(exc).__name__}") from None
    return Compiled(source, mode, code)


def _clean_syntax_error(exc: SyntaxError) -> SyntaxError:
    """The same message and position, without the parser's traceback and context."""
    return SyntaxError(
        exc.msg, (QUERY_FILENAME, exc.lineno, exc.offset, exc.text, exc.end_lineno, exc.end_offset)
    )


def _refusal(problems: list[str]) -> str:
    if any("import is not allowed" in problem for problem in problems):  # one rule, one line
        problems = [problem for problem in problems if "alias is not allowed" not in problem]
    shown = problems[:20]
    more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
    return "query refused by the sandbox:\n" + "\n".join(shown) + more


# -- the first pass: deny by default --------------------------------------------------------------


def _check_tree(tree: ast.AST) -> list[str]:
    """Every rule the tree breaks, as ``line N: why``; iterative, so depth cannot crash it."""
    problems: list[tuple[int, str]] = []
    stack: list[tuple[ast.AST, int, int]] = [(tree, 0, 1)]
    nodes = 0
    while stack:
        node, depth, line = stack.pop()
        line = getattr(node, "lineno", None) or line
        nodes += 1
        if nodes > MAX_NODES:
            problems.append((0, f"the query has more than {MAX_NODES} syntax nodes"))
            break
        if depth > MAX_AST_DEPTH:
            problems.append((line, f"expressions nested more than {MAX_AST_DEPTH} levels deep"))
            continue
        cls = type(node)
        if cls not in _ALLOWED_NODES:
            name = cls.__name__
            problems.append((line, _REFUSED.get(name, f"{name} is not allowed in a query")))
        else:
            for problem in _node_problems(node):
                problems.append((line, problem))
        stack.extend((child, depth + 1, line) for child in ast.iter_child_nodes(node))
    problems.sort(key=lambda item: item[0])
    return [f"line {line}: {text}" if line else text for line, text in problems]


def _name_problem(name: str | None) -> str | None:
    if name is None or name == "_":
        return None
    if name.startswith("_"):
        return f"name {name!r} starts with '_' (reserved for the sandbox's guards)"
    if name in _RESERVED_NAMES:
        return f"name {name!r} is reserved (a query has no output: its value is the result)"
    if name in _ESCAPE_NAMES or name in _BASE_EXCEPTIONS:
        return f"{name} is not available in a query (see pyzdb.sandbox_rules() or `pyzdb --rules`)"
    return None


def _node_problems(node: ast.AST) -> list[str]:
    """The rules of one allowed node type (the node's children are checked on their own)."""
    found: list[str | None] = []
    if isinstance(node, ast.Name):
        found.append(_name_problem(node.id))
    elif isinstance(node, ast.Attribute):
        if node.attr == "__name__" and isinstance(node.ctx, ast.Load):
            pass  # `type(v).__name__`: `_Policy` makes it a guarded call (pyzdb.sandbox.idioms)
        elif node.attr.startswith("_"):
            found.append(f"attribute {node.attr!r} starts with '_'")
        elif node.attr not in ALL_ATTRIBUTES:
            found.append(f"attribute {node.attr!r} is not available on any data type")
        if not isinstance(node.ctx, ast.Load):
            found.append("assigning or deleting attributes is not allowed")
    elif isinstance(node, ast.FunctionDef):
        found.append(_name_problem(node.name))
        if node.decorator_list:
            found.append("decorators are not allowed")
        if node.returns is not None or getattr(node, "type_params", None):
            found.append("annotations and type parameters are not allowed")
    elif isinstance(node, ast.arg):
        found.append(_name_problem(node.arg))
        if node.annotation is not None:
            found.append("annotations are not allowed")
    elif isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id in _ABSENT_CALLS:
            found.append(
                f"{node.func.id}() is not available in a query "
                "(see pyzdb.sandbox_rules() or `pyzdb --rules`)"
            )
    elif isinstance(node, ast.ExceptHandler):
        found.append(_name_problem(node.name))
        if node.type is None:
            found.append("a bare 'except:' is not allowed: name the exception classes")
    elif isinstance(node, ast.Try):
        if node.finalbody:
            found.append("'finally' is not allowed: it could swallow the sandbox's stop")
    elif isinstance(node, ast.comprehension):
        if node.is_async:
            found.append(_ASYNC)
    elif isinstance(node, ast.MatchValue):
        if not all(
            isinstance(
                sub, (ast.Constant, ast.UnaryOp, ast.BinOp, ast.USub, ast.Add, ast.Sub, ast.Load)
            )
            for sub in ast.walk(node.value)
        ):
            found.append(
                "only literal values are allowed in patterns (a dotted name would be "
                "looked up without the attribute guard)"
            )
    elif isinstance(node, (ast.MatchAs, ast.MatchStar)):
        found.append(_name_problem(node.name))
    elif isinstance(node, ast.MatchMapping):
        found.append(_name_problem(node.rest))
    return [problem for problem in found if problem]


# -- the second pass: RestrictedPython's transformer plus pyzdb's rewrites ------------------------


def _call(name: str, args: list[ast.expr], like: ast.AST) -> ast.Call:
    node = ast.Call(func=ast.Name(name, ast.Load()), args=args, keywords=[])
    copy_locations(node, like)
    return node


def _load(name: str, like: ast.AST) -> ast.Name:
    node = ast.Name(name, ast.Load())
    copy_locations(node, like)
    return node


def _type_is(name: str, kind: str, like: ast.AST) -> ast.Compare:
    test = ast.Compare(
        left=_call("_type_", [_load(name, like)], like),
        ops=[ast.Is()],
        comparators=[_load(kind, like)],
    )
    copy_locations(test, like)
    return test


def _all_of(tests: list[ast.expr], op: ast.boolop, like: ast.AST) -> ast.expr:
    if len(tests) == 1:
        return tests[0]
    node = ast.BoolOp(op=op, values=tests)
    copy_locations(node, like)
    return node


def _numbers_test(ints: list[str], floats: list[str], like: ast.AST) -> ast.expr:
    """``_type_(a) is _int_ and ... or _type_(f) is _float_ or ...``: the inline fast path.

    Every name in `ints` is an int, or one name in `floats` is a float: then the operation
    cannot repeat a sequence or format a string (a float operand makes it a TypeError).
    """
    tests: list[ast.expr] = []
    if ints:
        tests.append(
            _all_of(
                [_type_is(name, "_int_", like) for name in dict.fromkeys(ints)], ast.And(), like
            )
        )
    tests.extend(_type_is(name, "_float_", like) for name in dict.fromkeys(floats))
    return _all_of(tests, ast.Or(), like)


def _constant_of(node: ast.AST, *types: type) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in types


def _has_starred(target: ast.AST) -> bool:
    return any(isinstance(sub, ast.Starred) for sub in ast.walk(target))


def _unpack_spec(target: ast.Tuple | ast.List) -> tuple[tuple[int, Any], ...]:
    """Which items of an unpacked value are themselves unpacked: ((index, spec), ...)."""
    spec = []
    after_star = False
    for index, element in enumerate(target.elts):
        if isinstance(element, ast.Starred):
            after_star = True
        elif isinstance(element, (ast.Tuple, ast.List)):
            spec.append((index - len(target.elts) if after_star else index, _unpack_spec(element)))
    return tuple(spec)


def _has_slice(target: ast.AST) -> bool:
    """Whether `target` is a subscript by a slice (``l[i:j]``, ``l[i:j, k]``)."""
    key = target.slice if isinstance(target, ast.Subscript) else None
    return key is not None and any(isinstance(sub, ast.Slice) for sub in ast.walk(key))


def _cannot_hold_tuple(node: ast.expr) -> bool:
    """An element whose value is never a tuple built at run time (tuple displays skip `_tuple_`)."""
    if isinstance(node, ast.UnaryOp):
        return True  # not/-/+/~ never give a tuple
    return isinstance(
        node,
        (
            ast.Constant,
            ast.Compare,
            ast.Lambda,
            ast.List,
            ast.ListComp,
            ast.Set,
            ast.SetComp,
            ast.Dict,
            ast.DictComp,
            ast.GeneratorExp,
        ),
    )


class _Policy(RestrictingNodeTransformer):  # type: ignore[misc]
    """RestrictedPython's transformer with pyzdb's rewrites; `_check_tree` ran before it.

    Every rewrite keeps the location of the node it replaces, so error notes point at the
    query's own text.
    """

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        """``x.__name__`` (a read) becomes ``_name_of_(x)``: types and builtins answer, as in
        ``type(v).__name__``; anything else is refused by the guard (`pyzdb.sandbox.idioms`)."""
        if node.attr == "__name__" and isinstance(node.ctx, ast.Load):
            return _call("_name_of_", [self.visit(node.value)], node)
        return super().visit_Attribute(node)

    # -- arithmetic --------------------------------------------------------------------------

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        """``*``, ``%``, ``**`` and ``<<`` can build huge objects in one C call: priced first.

        ``a * b`` on names becomes ``a * b if _type_(a) is _int_ and _type_(b) is _int_ else
        _mul_(a, b)``: ints only double in size, sequences never take the fast path. ``x * x``,
        a float constant operand, ``x ** 2`` (small constant exponent) and ``x << 3`` cannot
        repeat a sequence and stay plain. ``a % b`` keeps a fast path when `a` is an int name.
        """
        node = self.node_contents_visit(node)
        op, left, right = type(node.op), node.left, node.right
        if op is ast.Mult:
            if _constant_of(left, int, float, complex, bool) and _constant_of(
                right, int, float, complex, bool
            ):
                return node
            if _constant_of(left, float, complex) or _constant_of(right, float, complex):
                return node
            if isinstance(left, ast.Name) and isinstance(right, ast.Name) and left.id == right.id:
                return node
            names = [side.id for side in (left, right) if isinstance(side, ast.Name)]
            if names and all(
                isinstance(side, ast.Name) or _constant_of(side, int) for side in (left, right)
            ):
                return self._fast_or_guard(node, _numbers_test(names, names, node), "_mul_")
            return _call("_mul_", [left, right], node)
        if op is ast.Mod:
            if _constant_of(left, int, float, complex, bool):
                return node
            if isinstance(left, ast.Name):
                test = _numbers_test([left.id], [left.id], node)
                return self._fast_or_guard(node, test, "_mod_")
            return _call("_mod_", [left, right], node)
        if op is ast.Pow:
            small = (_constant_of(right, int) and 0 <= right.value <= 4) or _constant_of(
                right, float
            )
            return node if small else _call("_pow_", [left, right], node)
        if op is ast.LShift:
            small = _constant_of(right, int) and 0 <= right.value <= 64
            return node if small else _call("_lshift_", [left, right], node)
        return node

    def _fast_or_guard(self, node: ast.BinOp, test: ast.expr, guard: str) -> ast.IfExp:
        slow = _call(guard, [copy.deepcopy(node.left), copy.deepcopy(node.right)], node)
        fast = ast.IfExp(test=test, body=node, orelse=slow)
        copy_locations(fast, node)
        return fast

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        """``c[k] op= v`` becomes ``_augitem_(c, k, 'op=', v)`` (c and k evaluated once);
        RestrictedPython refuses it. ``x op= v`` becomes ``x = _inplacevar_('op=', x, v)``,
        with an inline fast path when `x` is an int or float (accumulators in loops)."""
        target = node.target
        symbol = ast.Constant(_AUG_SYMBOLS[type(node.op)])
        copy_locations(symbol, node)
        if isinstance(target, ast.Subscript):
            container = self.visit(target.value)
            key = self.visit(target.slice)
            value = self.visit(node.value)
            statement: ast.stmt = ast.Expr(
                _call("_augitem_", [container, key, symbol, value], node)
            )
            copy_locations(statement, node)
            return statement
        if not isinstance(target, ast.Name):
            return super().visit_AugAssign(node)  # RestrictedPython reports the error
        self.check_name(target, target.id)
        value = self.visit(node.value)
        slow = _call("_inplacevar_", [symbol, _load(target.id, node), value], node)
        test = self._inplace_fast_test(target.id, node.op, value, node)
        if test is not None:
            fast = ast.BinOp(left=_load(target.id, node), op=node.op, right=value)
            copy_locations(fast, node)
            slow.args[2] = copy.deepcopy(value)
            slow = ast.IfExp(test=test, body=fast, orelse=slow)  # type: ignore[assignment]
            copy_locations(slow, node)
        store = ast.Name(target.id, ast.Store())
        copy_locations(store, target)
        statement = ast.Assign(targets=[store], value=slow)
        copy_locations(statement, node)
        return statement

    def _inplace_fast_test(
        self, name: str, op: ast.operator, value: ast.expr, like: ast.AST
    ) -> ast.expr | None:
        """When ``name op= value`` may skip `_inplacevar_`: the same rules as `visit_BinOp`."""
        kind = type(op)
        if kind in (ast.Pow, ast.LShift, ast.MatMult):
            return None
        if kind is ast.Mult:
            ints = [name]
            if isinstance(value, ast.Name):
                ints.append(value.id)
            elif not _constant_of(value, int):
                return _numbers_test([], [name], like)
            return _numbers_test(ints, [name], like)
        return _numbers_test([name], [name], like)

    # -- assignment, iteration, unpacking -----------------------------------------------------

    def visit_Assign(self, node: ast.Assign) -> ast.AST | list[ast.AST]:
        """Guards what CPython would otherwise iterate in C for an assignment target.

        ``a, *b = x`` collects `x` in C: ``a, *b = _unpack_(x, spec)`` materialises it within
        the budget. ``l[i:j] = x`` iterates `x` in C: ``_tmp = x; _setslice_(l, i:j, _tmp)``
        (the value first, as CPython evaluates it). Several targets share one temporary, so the
        value is evaluated once (RestrictedPython would evaluate it again).
        """
        value = self.visit(node.value)
        for target in node.targets:
            self._refuse_nested_slices(target, allow_top=True)
        plain = not any(_has_slice(t) or _has_starred(t) for t in node.targets)
        if plain or (len(node.targets) == 1 and not _has_slice(node.targets[0])):
            node.targets = [self.visit(target) for target in node.targets]
            node.value = value if plain else self._unpack(value, node.targets[0])
            return node
        temp = self.gen_tmp_name()
        store = ast.Name(temp, ast.Store())
        statements: list[ast.AST] = [ast.Assign(targets=[store], value=value)]
        for target in node.targets:
            source = _load(temp, node)
            if _has_slice(target):
                key = self.visit(target.slice)  # type: ignore[attr-defined]
                container = self.visit(target.value)  # type: ignore[attr-defined]
                statements.append(ast.Expr(_call("_setslice_", [container, key, source], node)))
            else:
                visited = self.visit(target)
                statements.append(
                    ast.Assign(targets=[visited], value=self._unpack(source, visited))
                )
        statements.append(self.gen_del_stmt(temp))
        for statement in statements:
            copy_locations(statement, node)
        return statements

    def _unpack(self, value: ast.expr, target: ast.AST) -> ast.expr:
        if isinstance(target, (ast.Tuple, ast.List)) and _has_starred(target):
            spec = ast.Constant(_unpack_spec(target))
            copy_locations(spec, target)
            return _call("_unpack_", [value, spec], target)
        return value

    def _refuse_nested_slices(self, target: ast.AST, allow_top: bool = False) -> None:
        """A slice inside an unpacking or loop target would be assigned an item iterated in
        C (``a, l[:0] = 1, iter(int, 1)``); only a whole ``l[i:j] = x`` is rewritten."""
        if allow_top and _has_slice(target):
            return
        for sub in ast.walk(target):
            if _has_slice(sub) and isinstance(sub.ctx, ast.Store):  # type: ignore[attr-defined]
                self.error(
                    sub,
                    "slice assignment is allowed only as a whole statement "
                    "(l[i:j] = value), not inside an unpacking or loop target",
                )

    def guard_iter(self, node: ast.For | ast.comprehension) -> ast.AST:
        """``for t in x`` -> ``_getiter_(x)``; a tuple target -> ``_getiter_(x, True)`` (the
        items are unpacked at once), a starred one -> ``_iter_unpack_(x, spec)``."""
        self._refuse_nested_slices(node.target)
        node = self.node_contents_visit(node)
        target = node.target
        if isinstance(target, (ast.Tuple, ast.List)) and _has_starred(target):
            spec = ast.Constant(_unpack_spec(target))
            copy_locations(spec, node.iter)
            new_iter = _call("_iter_unpack_", [node.iter, spec], node.iter)
        elif isinstance(target, (ast.Tuple, ast.List)):
            flag = ast.Constant(True)
            copy_locations(flag, node.iter)
            new_iter = _call("_getiter_", [node.iter, flag], node.iter)
        else:
            new_iter = _call("_getiter_", [node.iter], node.iter)
        node.iter = new_iter
        return node

    def visit_Starred(self, node: ast.Starred) -> ast.AST:
        """``[*x]``, ``(*x,)``, ``{*x}``, ``f(*x)``: CPython collects `x` in C, so bound it."""
        node = self.node_contents_visit(node)
        if isinstance(node.ctx, ast.Load):
            node.value = _call("_starred_", [node.value], node.value)
        return node

    def visit_Tuple(self, node: ast.Tuple) -> ast.AST:
        """A tuple display holding run-time values is built by ``_tuple_`` (depth-checked)."""
        node = self.node_contents_visit(node)
        if not isinstance(node.ctx, ast.Load) or all(map(_cannot_hold_tuple, node.elts)):
            return node
        return _call("_tuple_", node.elts, node)

    # -- functions ------------------------------------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        """``def f(*a)`` packs its arguments in a tuple: its body starts with ``_args_(a)``."""
        node = super().visit_FunctionDef(node)
        if node.args.vararg is not None:
            check = ast.Expr(_call("_args_", [_load(node.args.vararg.arg, node)], node))
            copy_locations(check, node)
            node.body.insert(0, check)
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        """``lambda *a: e`` becomes ``lambda *a: e if _args_(a) else None``."""
        node = super().visit_Lambda(node)
        if node.args.vararg is not None:
            body = ast.IfExp(
                test=_call("_args_", [_load(node.args.vararg.arg, node)], node),
                body=node.body,
                orelse=ast.Constant(None),
            )
            copy_locations(body, node.body)
            node.body = body
        return node

    # -- exceptions -----------------------------------------------------------------------------

    def visit_Try(self, node: ast.Try) -> ast.AST:
        """``except E:`` becomes ``except _catch_(lambda: E):``.

        The class expression runs after `_catch_` has re-raised any pending stop, so it cannot
        replace the stop with an exception of its own (NameError, TypeError) that an outer
        ``except Exception`` would catch.
        """
        node = self.node_contents_visit(node)
        for handler in node.handlers:
            if handler.type is not None:
                thunk = ast.Lambda(
                    args=ast.arguments(
                        posonlyargs=[],
                        args=[],
                        vararg=None,
                        kwonlyargs=[],
                        kw_defaults=[],
                        kwarg=None,
                        defaults=[],
                    ),
                    body=handler.type,
                )
                copy_locations(thunk, handler.type)
                handler.type = _call("_catch_", [thunk], handler.type)
        return node

    # -- f-strings ------------------------------------------------------------------------------

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        """``f'{a!r:>{w}}x'`` becomes ``_fstr_(_fmtval_(a, 114, _fstr_(_fmtval_(w, -1, None))),
        'x')``: widths and precisions are priced, conversions bounded, the total checked."""
        parts: list[ast.expr] = []
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                spec = (
                    self.visit(value.format_spec)
                    if value.format_spec is not None
                    else ast.Constant(None)
                )
                conversion = ast.Constant(value.conversion)
                copy_locations(spec, node)
                copy_locations(conversion, node)
                parts.append(_call("_fmtval_", [self.visit(value.value), conversion, spec], node))
            else:
                parts.append(value)
        return _call("_fstr_", parts, node)

    # -- match: RestrictedPython has no rules for it; the first pass refused the unsafe parts --

    def visit_Match(self, node: ast.Match) -> ast.AST:
        return self.node_contents_visit(node)

    def visit_match_case(self, node: ast.match_case) -> ast.AST:
        return self.node_contents_visit(node)

    def visit_MatchValue(self, node: ast.MatchValue) -> ast.AST:
        return node  # a literal: leave it untouched, patterns accept no calls

    def visit_MatchSingleton(self, node: ast.MatchSingleton) -> ast.AST:
        return node

    def visit_MatchSequence(self, node: ast.MatchSequence) -> ast.AST:
        return self.node_contents_visit(node)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> ast.AST:
        node.patterns = [self.visit(pattern) for pattern in node.patterns]
        return node  # keys are literals, as in MatchValue

    def visit_MatchStar(self, node: ast.MatchStar) -> ast.AST:
        return node

    def visit_MatchAs(self, node: ast.MatchAs) -> ast.AST:
        return self.node_contents_visit(node)

    def visit_MatchOr(self, node: ast.MatchOr) -> ast.AST:
        return self.node_contents_visit(node)


_AUG_SYMBOLS = {
    ast.Add: "+=",
    ast.Sub: "-=",
    ast.Mult: "*=",
    ast.Div: "/=",
    ast.FloorDiv: "//=",
    ast.Mod: "%=",
    ast.Pow: "**=",
    ast.LShift: "<<=",
    ast.RShift: ">>=",
    ast.BitAnd: "&=",
    ast.BitOr: "|=",
    ast.BitXor: "^=",
    ast.MatMult: "@=",
}


def _capture_last_expression(tree: ast.Module) -> None:
    """Exec mode: the last statement, if it is an expression, assigns ``_result_``.

    As in IPython and the REPL: an expression in the middle (`db['a'] * 2` followed by an
    assignment) is evaluated and dropped, not returned.
    """
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        statement = tree.body[-1]
        assign = ast.Assign(targets=[ast.Name("_result_", ast.Store())], value=statement.value)
        copy_locations(assign, statement)
        tree.body[-1] = assign


# -- running ------------------------------------------------------------------------------------


def run(compiled: Compiled, names: dict[str, object], budget: Budget) -> object:
    """Evaluate `compiled` with `names` bound, within `budget`; return its value.

    Exec mode returns the value of the last top-level expression statement, else None. The
    query's own exceptions come out as the same built-in type with the same (bounded) args and
    a note ``query line L, column C: <line>`` (attributes `pyzdb_line`, `pyzdb_column`);
    pyzdb errors raised inside (the store's SecurityError) come out unchanged with the note;
    refusals are `SecurityError`, overruns `LimitExceeded` (MemoryError becomes
    ``LimitExceeded(budget="memory")``); any other BaseException becomes `Error`. Nothing but
    an `Exception` escapes. The result's size is left to the engine, which detaches it within
    `Budget.max_result` (`pyzdb.engine.Engine.detach`).
    """
    if _LEFTOVERS:
        _LEFTOVERS.clear()  # `release_leftovers`, inlined: this is every request's path
    request = Request(budget)
    scope = request.make_globals()
    for name, value in names.items():
        if (
            type(name) is not str
            or not name.isidentifier()
            or name.startswith("_")
            or keyword.iskeyword(name)
        ):
            raise SecurityError(
                f"cannot bind {name!r} in a query: names are identifiers that do not start with '_'"
            )
        scope[name] = value
    error: Exception | None = None
    value = None
    try:
        with _Limits(request):
            if compiled.mode == "eval":
                value = eval(compiled.code, scope)  # noqa: S307 - the point of this module
            else:
                exec(compiled.code, scope)  # noqa: S102
                value = scope.get("_result_")
            if type(value) is ItemsView:
                value = value.view
    except BaseException as exc:  # noqa: BLE001 - the boundary: everything is translated
        error = _translate(exc, request, compiled.source)
        _LEFTOVERS.append(exc)  # its frames hold the query's locals
    _LEFTOVERS.append(scope)
    if error is not None:
        raise error  # outside the except block: no __context__ chaining to the query's frames
    return value


#: What the last evaluation left behind (its globals; the exception whose frames hold its
#: locals). Freeing a structure the query built -- up to the memory budget, millions of
#: objects -- is one long C call; it happens in `release_leftovers`, which the server calls
#: once the request is answered and off the supervisor's clock, and `run` calls before the
#: next evaluation's budget starts.
_LEFTOVERS: list[Any] = []


def release_leftovers() -> None:
    """Free what the last evaluation left behind (see `_LEFTOVERS`)."""
    _LEFTOVERS.clear()


class _Limits:
    """Arms and disarms everything one evaluation needs: recursion limit, tick, hard kill."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.active = False
        self.recursion = 0
        self.started = 0.0
        self.previous_handler: Any = None
        self.previous_timer = (0.0, 0.0)
        self.uses_signal = False
        self.previous_request: Request | None = None

    def __enter__(self) -> None:
        request, budget = self.request, self.request.budget
        self.started = monotonic()
        request.deadline = self.started + budget.time
        request.memory_base = _memory_baseline(self.started)
        if budget.kill_after is not None:  # first: it is the one step that can fail
            faulthandler.dump_traceback_later(budget.time + budget.kill_after, exit=True)
        self.previous_request = activate(request)
        self.recursion = sys.getrecursionlimit()
        sys.setrecursionlimit(_stack_depth() + QUERY_FRAMES)
        tick = max(min(TICK, budget.time / 4), 0.002)
        self.uses_signal = (
            hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        )
        self.active = True
        if self.uses_signal:
            self.previous_handler = _ALARM.arm(self)
            self.previous_timer = signal.setitimer(signal.ITIMER_REAL, tick, tick)
        else:
            _WATCHDOG.watch(request, threading.get_ident(), tick)

    def on_alarm(self, frame: Any) -> None:
        """SIGALRM: interrupts bytecode and big-int arithmetic; re-raises on every tick.

        Only in the query's own frames or the guards': a stop raised inside the store's code
        could land between a change and its undo record. Elsewhere the next tick tries again,
        and meanwhile every guard call raises the pending stop.
        """
        if self.active:
            error = self.request.overrun()
            if error is not None and _interruptible(frame):
                raise Stop(error)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # No stop can land in here: the tick raises only in query and guard frames.
        self.active = False
        if self.uses_signal:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            _let_signals_run()
            _ALARM.disarm(self.previous_handler)
            delay, interval = self.previous_timer
            if delay:
                remaining = max(delay - (monotonic() - self.started), 0.001)
                signal.setitimer(signal.ITIMER_REAL, remaining, interval)
        else:
            _WATCHDOG.release(self.request)
        if self.request.budget.kill_after is not None:
            faulthandler.cancel_dump_traceback_later()
        sys.setrecursionlimit(self.recursion)
        activate(self.previous_request)


class _AlarmHandler:
    """The SIGALRM handler, installed once and left in place while nobody else wants SIGALRM.

    Swapping handlers around every request cost more than a small query (`signal.signal`
    converts enums in Python, twice a request). So the handler stays installed and forwards to
    the evaluation in progress; only when the host program has its own SIGALRM handler is
    that handler swapped out for the request and put back after it.
    """

    def __init__(self) -> None:
        self.current: _Limits | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.current is not None:
            self.current.on_alarm(frame)

    def arm(self, limits: _Limits) -> Any:
        """Route SIGALRM to `limits`; returns the handler to restore afterwards (or None)."""
        self.current = limits
        installed = _signal_module.getsignal(signal.SIGALRM)
        if installed is self:
            return None
        _signal_module.signal(signal.SIGALRM, self)
        return None if installed in (signal.SIG_DFL, signal.SIG_IGN, None) else installed

    def disarm(self, previous: Any) -> None:
        self.current = None
        if previous is not None:
            signal.signal(signal.SIGALRM, previous)


_ALARM = _AlarmHandler()

#: Seconds a reading of the process's resident size serves as the baseline of the memory
#: budget: reading /proc costs more than a small query, and the baseline moves slowly.
MEMORY_BASELINE_AGE = 1.0
_baseline = (float("-inf"), 0)


def _memory_baseline(now: float) -> int:
    global _baseline
    if now - _baseline[0] > MEMORY_BASELINE_AGE:
        _baseline = (now, resident_memory())
    return _baseline[1]


def _interruptible(frame: Any) -> bool:
    """Whether a stop may be raised in `frame`: query code, or a guard's own state only."""
    return frame is not None and frame.f_code.co_filename in _INTERRUPTIBLE


_INTERRUPTIBLE = frozenset({QUERY_FILENAME, Request.getiter.__code__.co_filename})


def _let_signals_run() -> None:
    """A Python call: CPython runs pending signal handlers at function entry, so a SIGALRM
    that arrived just before the timer stopped reaches our (now inactive) handler, not the
    previous one after it is restored."""


def _stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    return depth


class _Watchdog:
    """One daemon thread that ticks the requests evaluated outside the main thread.

    On an overrun it raises `AsyncStop` in the evaluating thread
    (``PyThreadState_SetAsyncExc``), again at every tick until the request is released.
    Release clears an exception still pending, under the same lock, so none can land in the
    caller after `run` returns. The exception is set only while the thread's current frame is
    query or guard code: a thread waiting for the GIL resumes in that very frame and raises
    there first. An asynchronous exception interrupts bytecode only: big-int arithmetic runs
    to its end (see sandbox/README.md, residual risks).
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._watched: dict[Request, int] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._tick = TICK
        api = ctypes.pythonapi
        self._raise = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
            ("PyThreadState_SetAsyncExc", api)
        )
        self._clear = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
            ("PyThreadState_SetAsyncExc", api)
        )

    def watch(self, request: Request, ident: int, tick: float) -> None:
        with self._lock:
            self._watched[request] = ident
            self._tick = min(self._tick, tick) if len(self._watched) > 1 else tick
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._loop, name="pyzdb-watchdog", daemon=True
                )
                self._thread.start()
            self._lock.notify()

    def release(self, request: Request) -> None:
        with self._lock:
            ident = self._watched.pop(request, None)
            if ident is not None and request.fired:
                self._clear(ident, None)

    def _loop(self) -> None:
        with self._lock:
            while True:
                while not self._watched:
                    self._lock.wait()
                frames = sys._current_frames()
                for request, ident in list(self._watched.items()):
                    if request.overrun() is not None and _interruptible(frames.get(ident)):
                        request.fired = True
                        self._raise(ident, AsyncStop)
                del frames
                self._lock.wait(self._tick)


_WATCHDOG = _Watchdog()


# -- errors at the boundary ---------------------------------------------------------------------


def _translate(exc: BaseException, request: Request, source: str) -> Exception:
    """What `run` raises for an exception that left the query."""
    where = _locate(exc.__traceback__, source)
    error: Exception
    if isinstance(exc, Stop):
        error = request.error or exc.error or Error("query was stopped")
    elif isinstance(exc, MemoryError):
        error = LimitExceeded("query ran out of memory", "memory")
    elif isinstance(exc, Error):
        error = exc.with_traceback(None)
        error.__context__ = error.__cause__ = None
    elif isinstance(exc, Exception):
        error = _rebuild(exc, request)
    else:
        error = Error(f"query raised {type(exc).__name__}, which a query may not raise")
    line = column = None
    if where is not None:
        line, column, text = where
        place = f"line {line}" if column is None else f"line {line}, column {column}"
        note = f"query {place}: {text}"
        if hasattr(error, "add_note"):
            error.add_note(note)
        else:  # Python 3.10: the attribute add_note would fill
            error.__notes__ = [*getattr(error, "__notes__", ()), note]  # type: ignore[attr-defined]
    error.pyzdb_line = line  # type: ignore[attr-defined]
    error.pyzdb_column = column  # type: ignore[attr-defined]
    return error


def _rebuild(exc: Exception, request: Request) -> Exception:
    """A fresh exception of the same built-in type, its args bounded and detached.

    Fresh, so no traceback, frame or context of the query travels on; bounded, so printing it
    later (outside any budget) is cheap and shows no object addresses.
    """
    cls = type(exc)
    args = tuple(_plain_arg(arg, request) for arg in exc.args)
    if cls.__module__ == "builtins":
        try:
            return cls(*args)
        except Exception:  # noqa: BLE001 - a constructor that wants other args: say it in words
            pass
    text = ", ".join(arg if type(arg) is str else repr(arg) for arg in args)
    return Error(f"{cls.__name__}: {text}")


def _plain_arg(arg: Any, request: Request) -> Any:
    cls = type(arg)
    if cls is str:  # C code formats reprs into messages ("<function ... at 0x7f...>")
        arg = _ADDRESS.sub("0x...", arg)
        return arg if len(arg) <= ARG_LIMIT else arg[:ARG_LIMIT] + "..."
    if cls is bytes:
        return arg if len(arg) <= ARG_LIMIT else arg[:ARG_LIMIT] + b"..."
    if cls in (bool, float, type(None)) or (cls is int and arg.bit_length() <= 64):
        return arg
    if not request.is_data(arg, ARG_LIMIT):
        return f"<{cls.__name__}>"
    if cls is tuple and all(_plain_arg(item, request) is item for item in arg):
        return arg
    return repr(arg)


#: A heap address as CPython prints it in a repr: never sent to a client.
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


def _locate(tb: TracebackType | None, source: str) -> tuple[int, int | None, str] | None:
    """(line, 1-based column or None, source line) of the innermost frame of query code."""
    last = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == QUERY_FILENAME:
            last = tb
        tb = tb.tb_next
    if last is None:
        return None
    line, byte_column = last.tb_lineno, None
    positions = getattr(last.tb_frame.f_code, "co_positions", None)  # Python 3.11+
    if positions is not None and last.tb_lasti >= 0:
        for start, _end, start_column, _end_column in islice(positions(), last.tb_lasti // 2, None):
            if start is not None:
                line, byte_column = start, start_column
            break
    lines = source.splitlines()
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    column = None
    if byte_column is not None:
        column = len(text.encode("utf-8")[:byte_column].decode("utf-8", "replace")) + 1
    return line, column, text.strip()[:200]


__all__ = [
    "Budget",
    "Compiled",
    "compile_request",
    "run",
    "release_leftovers",
]
