"""The compile-time policy: RestrictedPython's transformer with pyzdb's rewrites.

`pyzdb.sandbox.checks` has already refused every node without a rule; `Policy` then rewrites
the tree into guard calls: RestrictedPython's own (``_getattr_``, ``_getiter_``, ``_write_``...),
pyzdb's arithmetic and assignment rewrites (`pyzdb.sandbox.rewrites`), and here the rest:
comparisons (`ComparisonRewrites`), ``x.__name__``, ``*args`` packing, ``except`` clauses,
f-strings and ``match``. In exec mode `capture_last_expression` makes the last top-level
expression statement the result.
"""

from __future__ import annotations

import ast
import copy
from typing import cast

from RestrictedPython.transformer import RestrictingNodeTransformer, copy_locations

from pyzdb.sandbox.operands import cheap_pair, operand_kind
from pyzdb.sandbox.rewrites import (
    AssignmentRewrites,
    Located,
    OperatorRewrites,
    Visited,
    call_node,
    join_tests,
    load_node,
)

#: The symbol `_compare_` receives for each comparison operator.
_COMPARE_SYMBOLS = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}


def _pure(node: ast.expr, depth: int = 0) -> bool:
    """An operand whose evaluation runs no query code and changes nothing: a name, a
    constant, an item of one by a name or constant (``r['age']``). It may be evaluated twice."""
    if isinstance(node, (ast.Name, ast.Constant)):
        return True
    return (
        depth < 3
        and isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "_getitem_"
        and len(node.args) == 2
        and not node.keywords
        and _pure(node.args[0], depth + 1)
        and isinstance(node.args[1], (ast.Name, ast.Constant))
    )


def _type_in(operand: ast.expr, kinds: str, like: Located) -> ast.Compare:
    """``_type_(operand) in kinds``."""
    test = ast.Compare(
        left=call_node("_type_", [copy.deepcopy(operand)], like),
        ops=[ast.In()],
        comparators=[load_node(kinds, like)],
    )
    copy_locations(test, like)
    return test


class ComparisonRewrites(RestrictingNodeTransformer):
    """``a == b``, ``a < b``, ``x in c``: comparisons of containers are priced by what they
    walk (`pyzdb.sandbox.comparisons`), so a comparison the compiler cannot prove cheap
    becomes ``_compare_(a, '==', b)``, behind an inline type check where that is safe.

    Proven cheap, and left plain: identity; a literal, a unary or a comparison (a number or a
    bool) on one side of ``==``/``<``; a small needle or a literal haystack for ``in``; and
    the same for names whose kind is known (`known`: parameters and names the query binds
    only to literals or sets, `pyzdb.sandbox.operands`).
    """

    def __init__(self, known: dict[str, str] | None = None) -> None:
        super().__init__()
        #: The kind of each name known at compile time.
        self.known = known or {}

    def _kind(self, node: ast.expr) -> str | None:
        return self.known.get(node.id) if isinstance(node, ast.Name) else operand_kind(node)

    def _plain_pair(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> bool:
        """Whether ``left op right`` is cheap whatever the run-time values."""
        return cheap_pair(left, op, right, self._kind)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        """One pair: `_pair`. A chain ``a < b < c`` is ``a < b and b < c`` with `b` evaluated
        once: twice when it is pure (a name, ``r['k']``), else held by ``_chain_`` for the next
        link (``_link_()``)."""
        node = self.node_contents_visit(node)
        operands = [node.left, *node.comparators]
        pairs = list(zip(operands, node.ops, operands[1:], strict=False))
        if all(self._plain_pair(*pair) for pair in pairs):
            return node
        if len(pairs) == 1:
            return self._pair(node.left, node.ops[0], node.comparators[0], node)
        links: list[ast.expr] = []
        if all(map(_pure, operands[1:-1])):
            for index, (left, op, right) in enumerate(pairs):
                if index:
                    left = copy.deepcopy(left)
                links.append(self._pair(left, op, right, node))
        else:
            last = len(pairs) - 1
            for index, (left, op, right) in enumerate(pairs):
                held = call_node("_link_", [], node) if index else left
                guard = "_compare_" if index == last else "_chain_"
                links.append(call_node(guard, [held, self._symbol(op, node), right], node))
        chain = ast.BoolOp(op=ast.And(), values=links)
        copy_locations(chain, node)
        return chain

    def _pair(self, left: ast.expr, op: ast.cmpop, right: ast.expr, like: Located) -> ast.expr:
        """``left op right``, plain when cheap by its form; else ``_compare_``, behind an inline
        type check of one operand where the check sees the value compared: a pure left side
        (evaluated again right after), or a name on the right that the left cannot rebind."""
        plain = ast.Compare(left=left, ops=[op], comparators=[right])
        copy_locations(plain, like)
        if self._plain_pair(left, op, right):
            return plain
        tests: list[ast.expr] = []
        left_pure = _pure(left)
        # A name on the right keeps its value while the left side runs, unless the left side
        # rebinds it (a walrus: functions cannot, global and nonlocal are refused).
        right_stays = isinstance(right, ast.Name) and not any(
            isinstance(sub, ast.NamedExpr) for sub in ast.walk(left)
        )
        if isinstance(op, (ast.In, ast.NotIn)):
            if right_stays or left_pure and _pure(right):
                tests.append(_type_in(right, "_haystacks_", like))
            if left_pure:
                tests.append(_type_in(left, "_needles_", like))
        elif isinstance(left, ast.Name) or left_pure and not right_stays:
            tests.append(_type_in(left, "_cheap_", like))
        elif right_stays:
            tests.append(_type_in(right, "_cheap_", like))
        guard = call_node(
            "_compare_",
            [copy.deepcopy(left), self._symbol(op, like), copy.deepcopy(right)],
            like,
        )
        if not tests:
            return guard
        fast = ast.IfExp(test=join_tests(tests, ast.Or(), like), body=plain, orelse=guard)
        copy_locations(fast, like)
        return fast

    @staticmethod
    def _symbol(op: ast.cmpop, like: Located) -> ast.Constant:
        symbol = ast.Constant(_COMPARE_SYMBOLS[type(op)])
        copy_locations(symbol, like)
        return symbol


class Policy(OperatorRewrites, ComparisonRewrites, AssignmentRewrites):
    """RestrictedPython's transformer with pyzdb's rewrites; `checks.check_tree` ran before it.

    Every rewrite keeps the location of the node it replaces, so error notes point at the
    query's own text.
    """

    def visit_Attribute(self, node: ast.Attribute) -> Visited:
        """``x.__name__`` (a read) becomes ``_name_of_(x)``: types and builtins answer, as in
        ``type(v).__name__``; anything else is refused by the guard (`pyzdb.sandbox.idioms`)."""
        if node.attr == "__name__" and isinstance(node.ctx, ast.Load):
            return call_node("_name_of_", [self.visit(node.value)], node)
        return super().visit_Attribute(node)

    # -- functions ------------------------------------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        """``def f(*a)`` packs its arguments in a tuple: its body starts with ``_args_(a)``."""
        node = cast(ast.FunctionDef, super().visit_FunctionDef(node))  # its contents visited
        if node.args.vararg is not None:
            check = ast.Expr(call_node("_args_", [load_node(node.args.vararg.arg, node)], node))
            copy_locations(check, node)
            node.body.insert(0, check)
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        """``lambda *a: e`` becomes ``lambda *a: e if _args_(a) else None``."""
        node = cast(ast.Lambda, super().visit_Lambda(node))  # its contents visited
        if node.args.vararg is not None:
            body = ast.IfExp(
                test=call_node("_args_", [load_node(node.args.vararg.arg, node)], node),
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
                handler.type = call_node("_catch_", [thunk], handler.type)
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
                parts.append(
                    call_node("_fmtval_", [self.visit(value.value), conversion, spec], node)
                )
            else:
                parts.append(value)
        return call_node("_fstr_", parts, node)

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


def capture_last_expression(tree: ast.Module) -> None:
    """Exec mode: the last statement, if it is an expression, assigns ``_result_``.

    As in IPython and the REPL: an expression in the middle (`db['a'] * 2` followed by an
    assignment) is evaluated and dropped, not returned.
    """
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        statement = tree.body[-1]
        assign = ast.Assign(targets=[ast.Name("_result_", ast.Store())], value=statement.value)
        copy_locations(assign, statement)
        tree.body[-1] = assign


__all__ = ["ComparisonRewrites", "Policy", "capture_last_expression"]
