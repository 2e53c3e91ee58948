"""Compiling a request: parse the text, check it, rewrite it, compile it, cache the result.

``compile_request(source, mode)``:

1. the source text itself is capped (`MAX_SOURCE`) and parsed here, never taken as an AST from a
   client: the tokenizer NFKC-normalises names, so ``ｅｖａｌ`` is ``eval``;
2. a first pass (`pyzdb.sandbox.checks`) refuses every node type without an explicit rule, and
   collects every violation with its line, raised once as one `SecurityError`;
3. RestrictedPython's transformer, subclassed by `pyzdb.sandbox.policy.Policy`, rewrites the
   tree into guard calls; in exec mode the last top-level expression statement becomes an
   assignment to ``_result_``;
4. the code object is cached (LRU) by ``(source, mode)`` and, when the caller passes the names
   it will bind, by what may be assumed of them (`pyzdb.sandbox.operands`): a comparison with a
   parameter that is a number or a short text compiles plain, and `run` checks the values
   against the assumptions before evaluating.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import CodeType
from typing import Any, Literal

from pyzdb.errors import SecurityError
from pyzdb.limits import MAX_SOURCE, QUERY_FILENAME
from pyzdb.sandbox.checks import check_tree
from pyzdb.sandbox.operands import Assumption, NameFacts, facts_of
from pyzdb.sandbox.policy import Policy, capture_last_expression

#: Compiled requests kept (by source and mode): at most ~256 x 64 KiB of source, plus code.
CACHE_SIZE = 256


@dataclass(frozen=True, eq=False)
class Compiled:
    """A request that passed the policy: its code object, ready for `run` (any number of times)."""

    source: str
    mode: Literal["eval", "exec"]
    code: CodeType
    #: What the code relies on about the names `run` binds (`pyzdb.sandbox.operands`).
    assumes: tuple[Assumption, ...] = ()
    #: What the source says about its names: whether the names bound matter, and how.
    facts: NameFacts | None = None


def compile_request(
    source: str, mode: Literal["eval", "exec"], names: Mapping[str, Any] | None = None
) -> Compiled:
    """Compile `source` in `mode` under the policy, or raise SyntaxError / SecurityError.

    `names`: what the caller will bind when it runs the code (parameters, the root). The code
    may then rely on their kinds (`Compiled.assumes`), and is good only for names of the same
    kinds: `run` refuses others.

    Cached by ``(source, mode)`` and the assumptions: compiling costs several times the
    evaluation of a small query.
    SyntaxError covers text that is not Python; SecurityError lists every rule the text breaks,
    each with its line. Nothing else escapes, whatever the text.

    >>> compile_request("db['a'] * 2", "eval").mode
    'eval'
    >>> try:
    ...     compile_request("open('/etc/passwd')", "eval")
    ... except SecurityError as exc:
    ...     print(str(exc).splitlines()[1])
    line 1: open() is not available in a query (see pyzdb.sandbox_rules() or `pyzdb --rules`)
    """
    if mode not in ("eval", "exec"):
        raise ValueError(f"mode must be 'eval' or 'exec', not {mode!r}")
    if type(source) is not str:
        raise TypeError(f"query source must be str, not {type(source).__name__}")
    compiled = _compile(source, mode, ())
    if names is None or compiled.facts is None or not compiled.facts.relevant:
        return compiled  # the usual request: no comparison with a name
    assumes = compiled.facts.assumptions(names)
    return _compile(source, mode, assumes) if assumes else compiled


def _parse(source: str, mode: Literal["eval", "exec"]) -> ast.AST:
    # The source is capped (`MAX_SOURCE`, in characters and in UTF-8 bytes): a 10 MB source
    # took ~10 s of CPU to compile; queries are expressions and short scripts, data travels
    # as parameters.
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
    return tree


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compile(
    source: str, mode: Literal["eval", "exec"], assumes: tuple[Assumption, ...]
) -> Compiled:
    tree = _parse(source, mode)
    problems = check_tree(tree)
    facts = facts_of(tree)
    if problems:
        raise SecurityError(_refusal(problems))
    policy = Policy({name: kind for name, kind, _ in assumes if kind is not None})
    try:
        tree = policy.visit(tree)
    except (RecursionError, MemoryError):
        raise SecurityError("query is nested too deeply to compile") from None
    if policy.errors:
        raise SecurityError(_refusal(policy.errors))
    if mode == "exec":
        capture_last_expression(tree)
    ast.fix_missing_locations(tree)
    try:
        code = compile(tree, QUERY_FILENAME, mode, dont_inherit=True)
    except SyntaxError as exc:  # 'return' outside function and the like
        raise _clean_syntax_error(exc) from None
    except (RecursionError, MemoryError, ValueError, TypeError, OverflowError) as exc:
        raise SecurityError(f"query could not be compiled: {type(exc).__name__}") from None
    return Compiled(source, mode, code, assumes, facts)


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


__all__ = ["CACHE_SIZE", "Compiled", "compile_request"]
