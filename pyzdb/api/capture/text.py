"""String capture: a query written as text is checked here, before anything travels.

It is compiled with the plain compiler (`eval` syntax for a query, `exec` for an execute), so a
syntax error is raised on the client, with its line and offset, and never travels. Its text is
shipped as typed; only line endings are canonicalised, and a block that is indented as a whole is
dedented. The lambda and def sources cut out by `functions` go through the same check.
"""

from __future__ import annotations

import functools
import textwrap

from pyzdb.api.capture.request import CaptureError, Syntax
from pyzdb.limits import MAX_SOURCE, QUERY_FILENAME


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
def checked_source(text: str, syntax: Syntax) -> str:
    """The canonical form of a query string, checked; remembered, since applications send the
    same few strings over and over and compiling costs more than the round trip."""
    source = _canonical(text)
    check_source(source, syntax)
    return source


def check_source(source: str, syntax: Syntax) -> None:
    """Refuse a source that is too large or does not compile, before anything travels.

    A query is a line or a block, not a program: the cap (`MAX_SOURCE`, in UTF-8 bytes) keeps
    hostile or accidental megabyte sources, which cost seconds to compile, off the wire.

    A full `compile` (not just `ast.parse`) also reports what the symbol table finds (`return`
    or `yield` outside a function, `nonlocal` without a binding), with line and offset.
    """
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE:
        raise CaptureError(f"query source is {size} bytes; the limit is {MAX_SOURCE}")
    try:
        # A final newline makes CPython point at the end of an unfinished last line (offset 10
        # in `db['l'] +`) instead of offset 0. The server compiles under the same file name, so
        # client and server errors look alike.
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


def compiles(source: str, syntax: Syntax) -> bool:
    """Whether `source` compiles in `syntax` (a lambda's body may need parentheses of its own)."""
    try:
        compile(source, QUERY_FILENAME, syntax, dont_inherit=True)
    except SyntaxError:
        return False
    return True


__all__ = ["check_source", "checked_source", "compiles"]
