"""The compile-time policy: RestrictedPython's transformer with pyzdb's rewrites.

`pyzdb.sandbox.checks` has already refused every node without a rule; `Policy` then rewrites
the tree into guard calls: RestrictedPython's own (``_getattr_``, ``_getiter_``, ``_write_``...),
pyzdb's arithmetic and assignment rewrites (`pyzdb.sandbox.rewrites`), and here the rest:
``x.__name__``, ``*args`` packing, ``except`` clauses, f-strings and ``match``. In exec mode
`capture_last_expression` makes the last top-level expression statement the result.
"""

from __future__ import annotations

import ast
from typing import cast

from RestrictedPython.transformer import copy_locations

from pyzdb.sandbox.rewrites import (
    AssignmentRewrites,
    OperatorRewrites,
    Visited,
    call_node,
    load_node,
)


class Policy(OperatorRewrites, AssignmentRewrites):
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


__all__ = ["Policy", "capture_last_expression"]
