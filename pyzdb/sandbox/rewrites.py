"""pyzdb's own rewrites of arithmetic and assignment, as mixins of RestrictedPython's transformer.

RestrictedPython turns attribute and item access, iteration and in-place operators into guard
calls; these rewrites add what it leaves to CPython's C loops: size-priced ``*``/``%``/``**``/
``<<`` (with an inline fast path for numbers), ``x op= v`` and ``c[k] op= v``, starred targets,
slice assignment, starred operands and tuple displays. `pyzdb.sandbox.policy.Policy` combines
them. Every rewrite keeps the location of the node it replaces, so error notes point at the
query's own text.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterable
from typing import Any, Protocol, TypeAlias, TypeGuard, TypeVar

from RestrictedPython.transformer import RestrictingNodeTransformer, copy_locations

#: The nodes that carry a source position: what RestrictedPython's `copy_locations` copies.
Located: TypeAlias = (
    ast.stmt | ast.expr | ast.excepthandler | ast.arg | ast.keyword | ast.alias | ast.pattern
)
#: What a visit of RestrictedPython's transformer returns: a node, nodes, or None (dropped).
Visited: TypeAlias = ast.AST | Iterable[ast.AST] | None

_V = TypeVar("_V")


class _ConstantOf(Protocol[_V]):
    """An `ast.Constant` known to hold a `_V` (what `_constant_of` tells)."""

    value: _V


def call_node(name: str, args: list[ast.expr], like: Located) -> ast.Call:
    node = ast.Call(func=ast.Name(name, ast.Load()), args=args, keywords=[])
    copy_locations(node, like)
    return node


def load_node(name: str, like: Located) -> ast.Name:
    node = ast.Name(name, ast.Load())
    copy_locations(node, like)
    return node


def _list_node(elements: list[ast.expr], like: Located) -> ast.List:
    node = ast.List(elts=elements, ctx=ast.Load())
    copy_locations(node, like)
    return node


def _type_is(name: str, kind: str, like: Located) -> ast.Compare:
    test = ast.Compare(
        left=call_node("_type_", [load_node(name, like)], like),
        ops=[ast.Is()],
        comparators=[load_node(kind, like)],
    )
    copy_locations(test, like)
    return test


def join_tests(tests: list[ast.expr], op: ast.boolop, like: Located) -> ast.expr:
    """`tests` joined by `op` (``a and b``, ``a or b``), or the one test alone."""
    if len(tests) == 1:
        return tests[0]
    node = ast.BoolOp(op=op, values=tests)
    copy_locations(node, like)
    return node


def _numbers_test(ints: list[str], floats: list[str], like: Located) -> ast.expr:
    """``_type_(a) is _int_ and ... or _type_(f) is _float_ or ...``: the inline fast path.

    Every name in `ints` is an int, or one name in `floats` is a float: then the operation
    cannot repeat a sequence or format a string (a float operand makes it a TypeError).
    """
    tests: list[ast.expr] = []
    if ints:
        tests.append(
            join_tests(
                [_type_is(name, "_int_", like) for name in dict.fromkeys(ints)], ast.And(), like
            )
        )
    tests.extend(_type_is(name, "_float_", like) for name in dict.fromkeys(floats))
    return join_tests(tests, ast.Or(), like)


def _constant_of(node: ast.AST, *types: type[_V]) -> TypeGuard[_ConstantOf[_V]]:
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


#: The operator symbol ``_inplacevar_`` and ``_augitem_`` receive for each in-place operator.
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


class OperatorRewrites(RestrictingNodeTransformer):
    """``a * b``, ``a % b``, ``a ** b``, ``a << b`` and ``x op= v``: priced unless provably
    small."""

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
            return call_node("_mul_", [left, right], node)
        if op is ast.Mod:
            if _constant_of(left, int, float, complex, bool):
                return node
            if isinstance(left, ast.Name):
                test = _numbers_test([left.id], [left.id], node)
                return self._fast_or_guard(node, test, "_mod_")
            return call_node("_mod_", [left, right], node)
        if op is ast.Pow:
            small = (_constant_of(right, int) and 0 <= right.value <= 4) or _constant_of(
                right, float
            )
            return node if small else call_node("_pow_", [left, right], node)
        if op is ast.LShift:
            small = _constant_of(right, int) and 0 <= right.value <= 64
            return node if small else call_node("_lshift_", [left, right], node)
        return node

    def _fast_or_guard(self, node: ast.BinOp, test: ast.expr, guard: str) -> ast.IfExp:
        slow = call_node(guard, [copy.deepcopy(node.left), copy.deepcopy(node.right)], node)
        fast = ast.IfExp(test=test, body=node, orelse=slow)
        copy_locations(fast, node)
        return fast

    def visit_AugAssign(self, node: ast.AugAssign) -> Visited:
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
                call_node("_augitem_", [container, key, symbol, value], node)
            )
            copy_locations(statement, node)
            return statement
        if not isinstance(target, ast.Name):
            return super().visit_AugAssign(node)  # RestrictedPython reports the error
        self.check_name(target, target.id)
        value = self.visit(node.value)
        slow = call_node("_inplacevar_", [symbol, load_node(target.id, node), value], node)
        result: ast.expr = slow
        test = self._inplace_fast_test(target.id, node.op, value, node)
        if test is not None:
            fast = ast.BinOp(left=load_node(target.id, node), op=node.op, right=value)
            copy_locations(fast, node)
            slow.args[2] = copy.deepcopy(value)
            result = ast.IfExp(test=test, body=fast, orelse=slow)
            copy_locations(result, node)
        store = ast.Name(target.id, ast.Store())
        copy_locations(store, target)
        statement = ast.Assign(targets=[store], value=result)
        copy_locations(statement, node)
        return statement

    def _inplace_fast_test(
        self, name: str, op: ast.operator, value: ast.expr, like: Located
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


class AssignmentRewrites(RestrictingNodeTransformer):
    """Assignment targets, loops, starred operands and tuple displays that CPython would
    otherwise fill or iterate in C."""

    def visit_Assign(self, node: ast.Assign) -> ast.AST | list[ast.stmt]:
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
        statements: list[ast.stmt] = [ast.Assign(targets=[store], value=value)]
        for target in node.targets:
            source = load_node(temp, node)
            if isinstance(target, ast.Subscript) and _has_slice(target):
                key = self.visit(target.slice)
                container = self.visit(target.value)
                statements.append(ast.Expr(call_node("_setslice_", [container, key, source], node)))
            else:
                visited = self.visit(target)
                statements.append(
                    ast.Assign(targets=[visited], value=self._unpack(source, visited))
                )
        statements.append(self.gen_del_stmt(temp))
        for statement in statements:
            copy_locations(statement, node)
        return statements

    def _unpack(self, value: ast.expr, target: ast.expr) -> ast.expr:
        if isinstance(target, (ast.Tuple, ast.List)) and _has_starred(target):
            # ignore: a tuple of constants is a Constant to the compiler; the stub lists scalars
            spec = ast.Constant(_unpack_spec(target))  # type: ignore[arg-type]
            copy_locations(spec, target)
            return call_node("_unpack_", [value, spec], target)
        return value

    def _refuse_nested_slices(self, target: ast.AST, allow_top: bool = False) -> None:
        """A slice inside an unpacking or loop target would be assigned an item iterated in
        C (``a, l[:0] = 1, iter(int, 1)``); only a whole ``l[i:j] = x`` is rewritten."""
        if allow_top and _has_slice(target):
            return
        for sub in ast.walk(target):
            if (
                isinstance(sub, ast.Subscript)
                and _has_slice(sub)
                and isinstance(sub.ctx, ast.Store)
            ):
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
            # ignore: a tuple of constants is a Constant to the compiler; the stub lists scalars
            spec = ast.Constant(_unpack_spec(target))  # type: ignore[arg-type]
            copy_locations(spec, node.iter)
            new_iter = call_node("_iter_unpack_", [node.iter, spec], node.iter)
        elif isinstance(target, (ast.Tuple, ast.List)):
            flag = ast.Constant(True)
            copy_locations(flag, node.iter)
            new_iter = call_node("_getiter_", [node.iter, flag], node.iter)
        else:
            new_iter = call_node("_getiter_", [node.iter], node.iter)
        node.iter = new_iter
        return node

    def visit_Starred(self, node: ast.Starred) -> ast.AST:
        """``[*x]``, ``(*x,)``, ``{*x}``, ``f(*x)``: CPython collects `x` in C, so bound it."""
        node = self.node_contents_visit(node)
        if isinstance(node.ctx, ast.Load):
            node.value = call_node("_starred_", [node.value], node.value)
        return node

    def visit_Set(self, node: ast.Set) -> ast.AST:
        """``{*a, b}`` becomes ``_set_([*_starred_(a), b])``: one set built in C from every
        item, priced like ``set()`` (hash collisions) as a whole."""
        node = self.node_contents_visit(node)
        if not any(isinstance(element, ast.Starred) for element in node.elts):
            return node
        return call_node("_set_", [_list_node(node.elts, node)], node)

    def visit_Dict(self, node: ast.Dict) -> ast.AST:
        """``{**a, k: v}`` becomes ``_dict_((True, False), [a, k, v])``: every key of the
        display is priced as one (hash collisions) before the dict is built."""
        node = self.node_contents_visit(node)
        if all(key is not None for key in node.keys):
            return node
        spec = ast.Constant(tuple(key is None for key in node.keys))  # type: ignore[arg-type]
        copy_locations(spec, node)
        values: list[ast.expr] = []
        for key, value in zip(node.keys, node.values, strict=True):
            values += [value] if key is None else [key, value]
        return call_node("_dict_", [spec, _list_node(values, node)], node)

    def visit_Tuple(self, node: ast.Tuple) -> ast.AST:
        """A tuple display holding run-time values is built by ``_tuple_`` (depth-checked)."""
        node = self.node_contents_visit(node)
        if not isinstance(node.ctx, ast.Load) or all(map(_cannot_hold_tuple, node.elts)):
            return node
        return call_node("_tuple_", node.elts, node)


__all__ = ["call_node", "load_node", "join_tests", "OperatorRewrites", "AssignmentRewrites"]
