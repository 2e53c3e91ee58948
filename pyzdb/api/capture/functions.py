"""Lambda and def capture: find the code's own source, and cut out the text to ship.

- **A lambda** is found in the source of its file through `linecache` (which also holds IPython
  and Jupyter cells). Every `Lambda` node that starts on the code's first line is compiled alone
  and compared with the lambda's own code object, so two lambdas on one line, nested lambdas and
  a source file edited since import are told apart. What travels is the body's exact text,
  compiled by the server in `eval` syntax with the lambda's parameter name as the root.
- **A def** is found the same way. What travels is `def NAME(ROOT):` followed by the original
  body lines, and a call line `NAME(ROOT)`, in `exec` syntax (the server returns the value of the
  last expression statement, i.e. the call). Decorators, annotations and defaults are left out:
  they were already applied on the client, and the shipped code is exactly this function's code.

What is found is a `Template`, cached per code object: a lambda captured in a loop is looked up
once. It also lists the globals the code loads, which `freevars` ships by value.
"""

from __future__ import annotations
import __future__

import ast
import dis
import functools
import inspect
import linecache
from collections.abc import Sequence
from dataclasses import dataclass
from types import CodeType, FunctionType

from pyzdb.api.capture.request import CaptureError, Mode, Syntax
from pyzdb.api.capture.text import check_source, compiles
from pyzdb.api.sourcefind import typed_sources


@dataclass(frozen=True, slots=True)
class Template:
    """What a code object ships, whatever function object carries it (cached per code)."""

    syntax: Syntax
    source: str
    root: str
    global_names: frozenset[str]
    own_name: str | None  # a def's name: bound by the shipped source itself, never a parameter


_CO_FUNCTION_KINDS = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
)

#: `from __future__` flags recorded in co_flags; candidates are compiled with the same ones.
#: `nested_scopes` is left out: its old flag value is CO_NESTED, which is not a future.
_FUTURE_FLAGS = (
    functools.reduce(
        int.__or__, (getattr(__future__, n).compiler_flag for n in __future__.all_feature_names)
    )
    & ~inspect.CO_NESTED
)


_TEMPLATES: dict[tuple[CodeType, str], Template] = {}
_TEMPLATES_MAX = 512  # a program has few query sites; this only caps a leak


def find_template(fn: FunctionType, mode: Mode) -> Template:
    """Check the signature, then find (once per code object) the source to ship."""
    code = fn.__code__
    what = describe_function(fn)
    if (
        code.co_argcount != 1
        or code.co_kwonlyargcount
        or code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)
    ):
        raise CaptureError(
            f"{what} takes {inspect.signature(fn)}, but a query takes exactly one parameter, "
            f"the database root (lambda db: ...); pass other values as free variables or as "
            f'db.{mode}("...", name=value)'
        )
    if code.co_flags & _CO_FUNCTION_KINDS:
        raise CaptureError(f"{what} is a generator or coroutine; only plain code can be shipped")
    root = code.co_varnames[0]
    if root.startswith("_"):
        raise CaptureError(
            f"the root parameter {root!r} of {what} starts with '_', a name the server refuses; "
            f"rename it"
        )
    if code.co_name != "<lambda>" and code.co_name.startswith("_"):
        raise CaptureError(f"{what} starts with '_', a name the server refuses; rename it")
    if code.co_name == root:
        raise CaptureError(f"{what} has the name of its own parameter; rename one of them")
    return _template_of(code, fn.__globals__, what, mode)


def _template_of(
    code: CodeType, module_globals: dict[str, object], what: str, mode: Mode
) -> Template:
    """Look the code's source up, cached by code object.

    The key is the code object (its bytecode and positions) plus its file, so a lambda captured
    in a loop is analysed once. Failures are not cached: a later call may find the source.
    """
    key = (code, code.co_filename)
    template = _TEMPLATES.get(key)
    if template is None:
        text, node = _locate(code, module_globals, what, mode)
        template = _build_template(code, node, text)
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()
        _TEMPLATES[key] = template
    return template


def _locate(
    code: CodeType, module_globals: dict[str, object], what: str, mode: Mode
) -> tuple[str, ast.Lambda | ast.FunctionDef]:
    """The source text holding the code, and the code's node in it.

    linecache first; then the places typed code leaves its text (`sourcefind`): the
    readline history of the plain prompt, `python -c`'s argument. A candidate counts only if
    the code's own node is found in it.
    """
    try:
        text = _file_text(code, module_globals, what, mode)
    except CaptureError:
        for text in typed_sources(code.co_filename):
            try:
                return text, _find_node(code, ast.parse(text), what, mode)
            except (SyntaxError, ValueError, CaptureError):
                continue
        raise
    return text, _find_node(code, _parse(code.co_filename, text), what, mode)


def _file_text(code: CodeType, module_globals: dict[str, object], what: str, mode: Mode) -> str:
    """Return the text of the code's file from `linecache` (files, zip imports, IPython cells).

    `inspect.getsourcelines` gives only the lines from the first one on, which do not parse on
    their own when the lambda sits inside a larger expression; so the whole file is read, as
    `inspect` itself does underneath.
    """
    filename = code.co_filename
    linecache.checkcache(filename)
    lines = linecache.getlines(filename, module_globals)
    if not lines:
        raise CaptureError(
            f"cannot find the source of {what} (file {filename!r}): code built by "
            f"exec()/eval() without a linecache entry, or typed at a prompt without readline, "
            f"keeps no source, and pyzdb ships source, not bytecode; write the query as a "
            f'string: db.{mode}("...", name=value)'
        )
    return "".join(lines).replace("\r\n", "\n").replace("\r", "\n")


@functools.lru_cache(maxsize=8)
def _parse(filename: str, text: str) -> ast.Module:
    """Parse a whole source file once for all the lambdas captured from it."""
    try:
        return ast.parse(text, filename)
    except (SyntaxError, ValueError) as exc:
        raise CaptureError(f"the source file {filename!r} does not parse: {exc}") from None


def _find_node(
    code: CodeType, tree: ast.Module, what: str, mode: Mode
) -> ast.Lambda | ast.FunctionDef:
    """Pick the exact node whose compiled code is `code`.

    Candidates are the nodes of the right kind and name starting on the code's first line; each
    is compiled alone and compared with `code`. On 3.11+ the comparison includes column
    positions, so even two identical-looking lambdas on one line resolve to the right one.
    """
    want = _fingerprint(code)
    imports = [stmt for stmt in tree.body if isinstance(stmt, (ast.Import, ast.ImportFrom))]
    for node in ast.walk(tree):
        if code.co_name == "<lambda>":
            if not isinstance(node, ast.Lambda) or node.lineno != code.co_firstlineno:
                continue
        elif (
            not isinstance(node, ast.FunctionDef)
            or node.name != code.co_name
            or min([node.lineno, *(d.lineno for d in node.decorator_list)]) != code.co_firstlineno
        ):
            continue
        compiled = _compile_alone(node, code, imports)
        if compiled is not None and _fingerprint(compiled) == want:
            return node
    raise CaptureError(
        f"the source of {what} ({code.co_filename!r}, line {code.co_firstlineno}) does not match "
        f"its code; was the file edited after it was loaded? Reload it, or write the query as a "
        f'string: db.{mode}("...", name=value)'
    )


def _compile_alone(
    node: ast.Lambda | ast.FunctionDef, code: CodeType, imports: Sequence[ast.stmt]
) -> CodeType | None:
    """Compile one candidate node in a context that gives its names the same scopes as `code`.

    The code's closure variables are bound in a stub enclosing function, so they compile to the
    same cell loads as in the original; every other free name is a global in both. The file's
    top-level imports come along (compiled, never run): CPython 3.11+ compiles `name.method()`
    differently when `name` was bound by an import. The node keeps its positions, so the
    compiled line table is comparable too.
    """
    stmt: ast.stmt = ast.Expr(node) if isinstance(node, ast.Lambda) else node
    if code.co_freevars:
        enclosing = ast.parse("def enclosing():\n    pass").body[0]
        assert isinstance(enclosing, ast.FunctionDef)
        enclosing.body = [
            ast.Assign([ast.Name(name, ast.Store())], ast.Constant(None))
            for name in code.co_freevars
        ] + [stmt]
        stmt = enclosing
    module = ast.fix_missing_locations(ast.Module([*imports, stmt], type_ignores=[]))
    try:
        holder = compile(
            module,
            code.co_filename,
            "exec",
            flags=code.co_flags & _FUTURE_FLAGS,
            dont_inherit=True,
        )
    except (SyntaxError, ValueError):
        return None
    if code.co_freevars:
        holder = next(
            c for c in holder.co_consts if isinstance(c, CodeType) and c.co_name == "enclosing"
        )
    return next(
        (c for c in holder.co_consts if isinstance(c, CodeType) and c.co_name == code.co_name),
        None,
    )


def _fingerprint(code: CodeType) -> tuple[object, ...]:
    """What makes two code objects the same code, wherever they were compiled.

    Unlike `code == code`, this ignores CO_NESTED (a candidate compiled at module level is not
    nested) and tells `1` from `True` and `0.0` from `-0.0` among the constants.
    """
    return (
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags & ~inspect.CO_NESTED,
        code.co_code,
        _const_key(code.co_consts),
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_firstlineno,
        code.co_linetable,
    )


def _const_key(const: object) -> object:
    if isinstance(const, CodeType):
        return _fingerprint(const)
    if isinstance(const, (tuple, frozenset)):
        return (type(const), type(const)(_const_key(c) for c in const))
    return (type(const), repr(const))


def _build_template(code: CodeType, node: ast.Lambda | ast.FunctionDef, text: str) -> Template:
    """Cut the text to ship out of the file, and list the globals the code may load."""
    lines = text.split("\n")  # the parser's own line breaks, after canonicalisation
    root = code.co_varnames[0]
    if isinstance(node, ast.Lambda):
        body = node.body
        source = _slice(lines, body.lineno, body.col_offset, body.end_lineno, body.end_col_offset)
        # A body that spans lines inside the caller's parentheses, or a bare walrus, only
        # parses inside parentheses of its own.
        if not compiles(source, "eval"):
            source = f"({source})"
        syntax: Syntax = "eval"
        own_name = None
    else:
        first = node.body[0]
        head = f"def {node.name}({root}):"
        one_liner = _slice(lines, first.lineno, 0, first.lineno, first.col_offset).strip()
        if one_liner:  # `def f(db): return db['x']`
            block = _slice(
                lines, first.lineno, first.col_offset, node.end_lineno, node.end_col_offset
            )
            head += " "
        else:  # a block: its lines travel verbatim, indentation and all
            block = _slice(lines, first.lineno, 0, node.end_lineno, node.end_col_offset)
            head += "\n"
        source = f"{head}{block}\n{node.name}({root})\n"
        syntax = "exec"
        own_name = node.name
    check_source(source, syntax)
    return Template(syntax, source, root, frozenset(_global_loads(code)), own_name)


def _slice(lines: list[str], line: int, col: int, end_line: int | None, end_col: int | None) -> str:
    """The text between two AST positions (lines 1-based, columns in UTF-8 bytes)."""
    assert end_line is not None and end_col is not None
    if line == end_line:
        return lines[line - 1].encode()[col:end_col].decode()
    first = lines[line - 1].encode()[col:].decode()
    last = lines[end_line - 1].encode()[:end_col].decode()
    return "\n".join([first, *lines[line : end_line - 1], last])


#: Opcodes that read a global (module-level or class-body code falls back to globals too).
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})


def _global_loads(code: CodeType) -> set[str]:
    """Names the code (and the code nested in it) looks up as globals: the compiler's own scope
    analysis, so comprehension variables, walrus targets and inner parameters never count."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in _GLOBAL_LOADS}
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _global_loads(const)
    return names


def describe_function(fn: FunctionType) -> str:
    """How an error message names `fn`."""
    if fn.__code__.co_name == "<lambda>":
        return "the lambda"
    return f"function {fn.__qualname__!r}"


__all__ = ["Template", "describe_function", "find_template"]
