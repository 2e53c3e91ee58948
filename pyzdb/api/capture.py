"""Client side of the query language: turn a string, a lambda or a function into a `Request`.

pyzdb ships **source text**, never bytecode or a traced term tree: bytecode changes with every
CPython minor release (Pony ORM's lesson) and tracing cannot see `if`/`and`/`or` (RethinkDB's).
The server compiles the text itself under RestrictedPython, so the client never needs it.

Theory of operation
-------------------
- **A string** is checked with the plain compiler here (`eval` syntax for a query, `exec` for
  an execute), so a syntax error is raised on the client, with its line and offset, and never
  travels. Its text is shipped as typed; only line endings are canonicalised, and a block that is
  indented as a whole is dedented. The root is named `db`.
- **A lambda** is found in the source of its file through `linecache` (which also holds IPython
  and Jupyter cells). Every `Lambda` node that starts on the code's first line is compiled alone
  and compared with the lambda's own code object, so two lambdas on one line, nested lambdas and
  a source file edited since import are told apart. What travels is the body's exact text,
  compiled by the server in `eval` syntax with the lambda's parameter name as the root.
- **A def** is found the same way. What travels is `def NAME(ROOT):` followed by the original
  body lines, and a call line `NAME(ROOT)`, in `exec` syntax (the server returns the value of the
  last expression statement, i.e. the call). Decorators, annotations and defaults are left out:
  they were already applied on the client, and the shipped code is exactly this function's code.
- **Free variables** (closure cells, and the globals the code loads that exist in its module) are
  shipped by value as parameters. Only data travels; anything else is refused here, naming the
  variable. Builtins are not parameters: the server supplies its own table.

`Request.mode` says whether the request may write (`execute`) or not (`query`);
`Request.syntax` says how to compile `source`, which is independent: a def shipped as a query is
read-only `exec` code, a lambda shipped as an execute is writable `eval` code.
"""

from __future__ import annotations
import __future__

import ast
import builtins
import dis
import functools
import inspect
import io
import keyword
import linecache
import sys
import textwrap
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import CodeType, FunctionType, MethodType, ModuleType
from typing import Literal

from pyzdb.api.sourcefind import typed_sources
from pyzdb.errors import Error
from pyzdb.limits import MAX_DEPTH, MAX_SOURCE, QUERY_FILENAME, ROOT_NAME

Mode = Literal["query", "execute"]
Syntax = Literal["eval", "exec"]

#: Name of the root in string queries (`db['x']`); a lambda or def names its own root.

#: Largest shipped source, in UTF-8 bytes. A query is a line or a block, not a program; the cap
#: keeps hostile or accidental megabyte sources (which cost seconds to compile) off the wire.

#: Deepest nesting of a shipped value: the store's own bound (`values.MAX_DEPTH`), since deeper
#: data could be neither stored nor returned, and the check below recurses once per level.

#: File name under which shipped sources are compiled, so client and server errors look alike.


class CaptureError(Error, ValueError):
    """The argument cannot become a request: no source, bad signature, bad name, too large."""


class UnshippableValue(Error, TypeError):
    """A free variable or parameter is not data (a module, function, class, file, object)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One query or execute, as it travels: source text plus the values it names.

    `mode` is what the request may do ("query": read-only, "execute": may write); `syntax` is how
    the server compiles `source` ("eval": one expression, "exec": statements whose last
    expression statement gives the value). `root` is the name the database root is bound to;
    `params` are bound as globals beside it.
    """

    mode: Mode
    syntax: Syntax
    source: str
    params: dict[str, object]
    root: str = ROOT_NAME


def capture(
    expr_or_fn: str | Callable[..., object],
    mode: Mode,
    params: Mapping[str, object] | None = None,
) -> Request:
    """Build the `Request` for `db.query(...)` / `db.execute(...)`.

    `expr_or_fn` is a source string, a lambda or a def taking the root as its only parameter.
    `params` (the caller's `**params`) add to, and override, the captured free variables.
    Raises `SyntaxError` for bad syntax, `CaptureError` when there is no usable source or a name
    is not allowed, `UnshippableValue` when a free variable or parameter is not data.
    """
    if mode not in ("query", "execute"):
        raise ValueError(f"mode must be 'query' or 'execute', not {mode!r}")
    explicit = dict(params or {})
    own_name = None
    if isinstance(expr_or_fn, str):
        syntax: Syntax = "eval" if mode == "query" else "exec"
        source = _checked_source(expr_or_fn, syntax)
        root, captured = ROOT_NAME, {}
    elif isinstance(expr_or_fn, FunctionType):
        template = _template(expr_or_fn, mode)
        syntax, source, root, own_name = (
            template.syntax,
            template.source,
            template.root,
            template.own_name,
        )
        captured = _free_values(expr_or_fn, template, explicit, mode)
    else:
        raise TypeError(
            f"db.{mode}() takes a source string, a lambda or a def function, "
            f"not {_describe(expr_or_fn)}"
        )
    for name, value in explicit.items():
        check_param_name(name, root)
        if name == own_name:
            raise CaptureError(f"parameter name {name!r} is the name of the shipped function")
        _check_data(f"parameter {name!r}", name, value, "")
    return Request(mode, syntax, source, {**captured, **explicit}, root)


def check_param_name(name: object, root: str = ROOT_NAME) -> None:
    """Refuse a parameter name the server could not bind or the query could not spell.

    A name must be an identifier in NFKC form (the tokenizer normalises names in the source, so
    `ﬁ` in a query means `fi`), not a keyword, not start with `_` (the sandbox refuses such
    names: they reach dunders), and not be the root's name (it would hide the database).
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise CaptureError(f"parameter name {name!r} is not a Python identifier")
    if unicodedata.normalize("NFKC", name) != name:
        normal = unicodedata.normalize("NFKC", name)
        raise CaptureError(f"parameter name {name!r} is spelled {normal!r} in a query; use that")
    if name.startswith("_"):
        raise CaptureError(
            f"parameter name {name!r} starts with '_': the server refuses such names; rename it"
        )
    if name == root:
        raise CaptureError(f"parameter name {name!r} is the name of the database root")


# -- strings ---------------------------------------------------------------------------------


def _canonical(text: str) -> str:
    """Canonicalise line endings, and dedent a block that is indented as a whole.

    Dedenting only when every line is indented leaves valid sources byte-for-byte alone (an
    indented first line is invalid anyway), because `textwrap.dedent` also empties
    whitespace-only lines, which would change a multi-line string literal.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if all(line[:1] in (" ", "\t") for line in text.split("\n") if line.strip()):
        text = textwrap.dedent(text)
    return text


@functools.lru_cache(maxsize=1024)
def _checked_source(text: str, syntax: Syntax) -> str:
    """The canonical form of a query string, checked; remembered, since applications send the
    same few strings over and over and compiling costs more than the round trip."""
    source = _canonical(text)
    _check_source(source, syntax)
    return source


def _check_source(source: str, syntax: Syntax) -> None:
    """Refuse a source that is too large or does not compile, before anything travels.

    A full `compile` (not just `ast.parse`) also reports what the symbol table finds (`return`
    or `yield` outside a function, `nonlocal` without a binding), with line and offset.
    """
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE:
        raise CaptureError(f"query source is {size} bytes; the limit is {MAX_SOURCE}")
    try:
        # A final newline makes CPython point at the end of an unfinished last line (offset 10
        # in `db['l'] +`) instead of offset 0.
        compile(
            source if source.endswith("\n") else source + "\n",
            QUERY_FILENAME,
            syntax,
            dont_inherit=True,
        )
    except ValueError as exc:  # null bytes: ValueError before 3.12, SyntaxError since
        raise SyntaxError(str(exc)) from None
    except (RecursionError, MemoryError):  # the compiler's own stack, not the machine's memory
        raise CaptureError("query source is nested too deeply to compile") from None


# -- lambdas and functions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Template:
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


_TEMPLATES: dict[tuple[CodeType, str], _Template] = {}
_TEMPLATES_MAX = 512  # a program has few query sites; this only caps a leak
_MISSING = object()


def _template(fn: FunctionType, mode: Mode) -> _Template:
    """Check the signature, then find (once per code object) the source to ship."""
    code = fn.__code__
    what = _what(fn)
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
) -> _Template:
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
    node: ast.Lambda | ast.FunctionDef, code: CodeType, imports: list[ast.stmt]
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


def _build_template(code: CodeType, node: ast.Lambda | ast.FunctionDef, text: str) -> _Template:
    """Cut the text to ship out of the file, and list the globals the code may load."""
    lines = text.split("\n")  # the parser's own line breaks, after canonicalisation
    root = code.co_varnames[0]
    if isinstance(node, ast.Lambda):
        body = node.body
        source = _slice(lines, body.lineno, body.col_offset, body.end_lineno, body.end_col_offset)
        # A body that spans lines inside the caller's parentheses, or a bare walrus, only
        # parses inside parentheses of its own.
        if not _compiles(source, "eval"):
            source = f"({source})"
        syntax: Syntax = "eval"
        own_name = None
    else:
        first = node.body[0]
        head = f"def {node.name}({root}):"
        one_liner = _slice(lines, first.lineno, 0, first.lineno, first.col_offset).strip()
        if one_liner:  # `def f(db): return db['x']`
            body = _slice(
                lines, first.lineno, first.col_offset, node.end_lineno, node.end_col_offset
            )
            head += " "
        else:  # a block: its lines travel verbatim, indentation and all
            body = _slice(lines, first.lineno, 0, node.end_lineno, node.end_col_offset)
            head += "\n"
        source = f"{head}{body}\n{node.name}({root})\n"
        syntax = "exec"
        own_name = node.name
    _check_source(source, syntax)
    return _Template(syntax, source, root, frozenset(_global_loads(code)), own_name)


def _slice(lines: list[str], line: int, col: int, end_line: int | None, end_col: int | None) -> str:
    """The text between two AST positions (lines 1-based, columns in UTF-8 bytes)."""
    assert end_line is not None and end_col is not None
    if line == end_line:
        return lines[line - 1].encode()[col:end_col].decode()
    first = lines[line - 1].encode()[col:].decode()
    last = lines[end_line - 1].encode()[:end_col].decode()
    return "\n".join([first, *lines[line : end_line - 1], last])


def _compiles(source: str, syntax: Syntax) -> bool:
    try:
        compile(source, QUERY_FILENAME, syntax, dont_inherit=True)
    except SyntaxError:
        return False
    return True


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


def _free_values(
    fn: FunctionType, template: _Template, explicit: Mapping[str, object], mode: Mode
) -> dict[str, object]:
    """The current values of the code's free variables, checked to be data.

    Names the caller passes explicitly are skipped (they override), as are names missing from
    the module (builtins, or a NameError the server will report) and names still bound to the
    builtin of that name.
    """
    code = fn.__code__
    skip = {*explicit, template.own_name}
    values: dict[str, object] = {}
    for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=True):
        if name in skip:
            continue
        try:
            values[name] = cell.cell_contents
        except ValueError:
            raise CaptureError(
                f"free variable {name!r} of {_what(fn)} is referenced before assignment"
            ) from None
    module_globals = fn.__globals__
    for name in sorted(template.global_names - skip):
        if name in module_globals and module_globals[name] is not getattr(builtins, name, _MISSING):
            values[name] = module_globals[name]
    hint = f'pass a value instead with db.{mode}("...", name=value)'
    for name, value in values.items():
        try:
            check_param_name(name, template.root)
        except CaptureError as exc:
            raise CaptureError(f"free variable {name!r} cannot be shipped: {exc}") from None
        _check_data(f"free variable {name!r}", name, value, hint)
    return values


# -- data check ------------------------------------------------------------------------------

_SCALARS = frozenset({type(None), bool, int, float, str, bytes})
_CONTAINERS = frozenset({tuple, list, dict, set, frozenset})


def _check_data(what: str, name: str, value: object, hint: str) -> None:
    """Refuse anything but data, naming the variable and where inside it the culprit sits."""
    problem = _not_data(value, name, 0, set())
    if problem is not None:
        path, desc = problem
        where = desc if path == name else f"{path} is {desc}"
        raise UnshippableValue(
            f"cannot ship {what} ({where}) to the server: only data travels "
            f"(None, bool, int, float, str, bytes, tuple, list, dict, set, pyzdb.File)"
            + (f"; {hint}" if hint else "")
        )


def _not_data(value: object, path: str, depth: int, active: set[int]) -> tuple[str, str] | None:
    """Return (path, description) of the first non-data part of `value`, or None."""
    kind = type(value)
    if kind in _SCALARS or _is_file(value):
        return None
    if kind not in _CONTAINERS:
        return path, _describe(value)
    if depth >= MAX_DEPTH:
        return path, f"nested deeper than {MAX_DEPTH} levels"
    if id(value) in active:
        return path, "a container that contains itself"
    active.add(id(value))
    try:
        if isinstance(value, dict):
            for key, item in value.items():
                sub = f"{path}[{key!r}]"
                problem = _not_data(key, f"a key of {path}", depth + 1, active) or _not_data(
                    item, sub, depth + 1, active
                )
                if problem:
                    return problem
        else:
            indexed = isinstance(value, (tuple, list))
            for i, item in enumerate(value):  # type: ignore[arg-type]
                if type(item) in _SCALARS:
                    continue
                sub = f"{path}[{i}]" if indexed else f"an element of {path}"
                problem = _not_data(item, sub, depth + 1, active)
                if problem:
                    return problem
        return None
    finally:
        active.discard(id(value))


def _is_file(value: object) -> bool:
    """`pyzdb.values.File`, without importing `pyzdb.values`: if it is not loaded, no File
    exists."""
    values_module = sys.modules.get("pyzdb.values")
    return values_module is not None and type(value) is getattr(values_module, "File", None)


def _describe(value: object) -> str:
    if isinstance(value, ModuleType):
        return "a module"
    if isinstance(value, type):
        return "a class"
    if isinstance(value, io.IOBase):
        return "an open file"
    if isinstance(value, MethodType):
        return "a bound method"
    if inspect.isroutine(value) or isinstance(value, functools.partial):
        return "a function"
    kind = type(value)
    qualname = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else (f"{kind.__module__}.{kind.__qualname__}")
    )
    return f"a value of type {qualname}"


def _what(fn: FunctionType) -> str:
    if fn.__code__.co_name == "<lambda>":
        return "the lambda"
    return f"function {fn.__qualname__!r}"


__all__ = [
    "Request",
    "capture",
    "check_param_name",
    "CaptureError",
    "UnshippableValue",
    "ROOT_NAME",
    "QUERY_FILENAME",
]
