"""The compiler's first pass over a query's syntax tree: deny by default.

Iterative, so no nesting can crash it: it counts nodes and depth and refuses every node type
without an explicit rule (`_ALLOWED_NODES`), names and attributes starting with ``_``,
attributes no data type offers, decorators, annotations, bare ``except``, ``finally``, class
patterns, catching the BaseException family...; violations are collected with their line
numbers, so the caller raises them once, as one `SecurityError`.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Callable
from typing import Any

from pyzdb.sandbox.attributes import ALL_ATTRIBUTES
from pyzdb.sandbox.builtins import ABSENT_CALLS

#: Most syntax nodes, and deepest nesting, of a parsed query. Both bound the compiler's work and
#: keep RestrictedPython's recursive transformer (about four frames per level) far from the
#: interpreter's recursion limit.
MAX_NODES = 50_000
MAX_AST_DEPTH = 100

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
#: ``raise SystemExit`` nor ``except BaseException`` gets as far as a NameError. Derived from
#: Python's own hierarchy (every builtin BaseException that is not an Exception), so a new member
#: is refused too; what a query *may* raise is `pyzdb.errors.QUERY_EXCEPTIONS`.
BASE_EXCEPTION_NAMES = frozenset(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type)
    and issubclass(value, BaseException)
    and not issubclass(value, Exception)
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


def check_tree(tree: ast.AST) -> list[str]:
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


#: Where a refusal of a missing builtin points: the rules, as a pip user has them.
_SEE_RULES = "(see pyzdb.sandbox_rules() or `pyzdb --rules`)"


def _name_problem(name: str | None) -> str | None:
    if name is None or name == "_":
        return None
    if name.startswith("_"):
        return f"name {name!r} starts with '_' (reserved for the sandbox's guards)"
    if name in _RESERVED_NAMES:
        return f"name {name!r} is reserved (a query has no output: its value is the result)"
    if name in _ESCAPE_NAMES or name in BASE_EXCEPTION_NAMES:
        return f"{name} is not available in a query {_SEE_RULES}"
    return None


def _attribute_rules(node: ast.Attribute) -> list[str | None]:
    found: list[str | None] = []
    if node.attr == "__name__" and isinstance(node.ctx, ast.Load):
        pass  # `type(v).__name__`: `Policy` makes it a guarded call (pyzdb.sandbox.idioms)
    elif node.attr.startswith("_"):
        found.append(f"attribute {node.attr!r} starts with '_'")
    elif node.attr not in ALL_ATTRIBUTES:
        found.append(f"attribute {node.attr!r} is not available on any data type")
    if not isinstance(node.ctx, ast.Load):
        found.append("assigning or deleting attributes is not allowed")
    return found


def _function_rules(node: ast.FunctionDef) -> list[str | None]:
    found = [_name_problem(node.name)]
    if node.decorator_list:
        found.append("decorators are not allowed")
    if node.returns is not None or getattr(node, "type_params", None):
        found.append("annotations and type parameters are not allowed")
    return found


def _arg_rules(node: ast.arg) -> list[str | None]:
    found = [_name_problem(node.arg)]
    if node.annotation is not None:
        found.append("annotations are not allowed")
    return found


def _call_rules(node: ast.Call) -> list[str | None]:
    if isinstance(node.func, ast.Name) and node.func.id in ABSENT_CALLS:
        return [f"{node.func.id}() is not available in a query {_SEE_RULES}"]
    return []


def _handler_rules(node: ast.ExceptHandler) -> list[str | None]:
    found = [_name_problem(node.name)]
    if node.type is None:
        found.append("a bare 'except:' is not allowed: name the exception classes")
    return found


def _try_rules(node: ast.Try) -> list[str | None]:
    if node.finalbody:
        return ["'finally' is not allowed: it could swallow the sandbox's stop"]
    return []


def _comprehension_rules(node: ast.comprehension) -> list[str | None]:
    return [_ASYNC] if node.is_async else []


_LITERAL_PARTS = (ast.Constant, ast.UnaryOp, ast.BinOp, ast.USub, ast.Add, ast.Sub, ast.Load)


def _match_value_rules(node: ast.MatchValue) -> list[str | None]:
    if all(isinstance(sub, _LITERAL_PARTS) for sub in ast.walk(node.value)):
        return []
    return [
        "only literal values are allowed in patterns (a dotted name would be "
        "looked up without the attribute guard)"
    ]


#: The rules of each allowed node type that has any (the node's children are checked on their
#: own): each returns its problems, None for a rule the node keeps.
_NODE_RULES: dict[type, Callable[[Any], list[str | None]]] = {
    ast.Name: lambda node: [_name_problem(node.id)],
    ast.Attribute: _attribute_rules,
    ast.FunctionDef: _function_rules,
    ast.arg: _arg_rules,
    ast.Call: _call_rules,
    ast.ExceptHandler: _handler_rules,
    ast.Try: _try_rules,
    ast.comprehension: _comprehension_rules,
    ast.MatchValue: _match_value_rules,
    ast.MatchAs: lambda node: [_name_problem(node.name)],
    ast.MatchStar: lambda node: [_name_problem(node.name)],
    ast.MatchMapping: lambda node: [_name_problem(node.rest)],
}


def _node_problems(node: ast.AST) -> list[str]:
    """The rules of one allowed node type (the node's children are checked on their own)."""
    rules = _NODE_RULES.get(type(node))
    if rules is None:
        return []
    return [problem for problem in rules(node) if problem]


__all__ = ["MAX_NODES", "MAX_AST_DEPTH", "BASE_EXCEPTION_NAMES", "check_tree"]
