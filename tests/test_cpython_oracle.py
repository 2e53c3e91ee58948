"""Differential test with CPython as the oracle, on code written in the Python tutorial's
style rather than for pyzdb (`tests/data/tutorial_snippets.txt`).

Each snippet runs in plain CPython (the value of its last statement if that is an expression,
as IPython shows it) and through `db.execute` on both kinds of database. The answer must be
the same -- value and type, or the same exception type and message -- unless the snippet is
marked `[refused]`, in which case pyzdb must refuse it with a `SecurityError` whose message
names one of the sandbox's stated rules, while CPython runs it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import pyzdb

SNIPPETS = Path(__file__).resolve().parent / "data" / "tutorial_snippets.txt"
#: The rules a refusal may cite (sandbox.py, guards.py, idioms.py, strformat.py messages).
STATED_RULES = re.compile(
    r"is not available in a query|(is|are) not allowed|is not available on any data type|"
    r"is reserved|starts with '_'|are not accessible|attribute '\w+' of \w+ is not allowed|"
    r"is readable on types and builtins only"
)


@dataclass(frozen=True)
class Snippet:
    name: str
    source: str
    refused: bool


def load() -> list[Snippet]:
    snippets: list[Snippet] = []
    name, lines = None, []
    for line in SNIPPETS.read_text(encoding="utf-8").splitlines():
        if line.startswith("# == "):
            if name is not None:
                snippets.append(_snippet(name, lines))
            name, lines = line[5:], []
        elif name is not None:
            lines.append(line)
    if name is not None:
        snippets.append(_snippet(name, lines))
    return snippets


def _snippet(title: str, lines: list[str]) -> Snippet:
    refused = title.endswith("[refused]")
    return Snippet(
        title.removesuffix("[refused]").strip(), "\n".join(lines).strip() + "\n", refused
    )


CASES = load()


def cpython(source: str) -> object:
    """The oracle: run `source`; the value of its last statement if it is an expression."""
    tree = ast.parse(source)
    scope: dict[str, object] = {}
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<snippet>", "exec"), scope)
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), "<snippet>", "eval"), scope)


def outcome(run) -> tuple[str, object]:
    try:
        value = run()
    except pyzdb.SecurityError as error:
        return "refused", str(error)
    except Exception as error:
        return "raised", (type(error).__name__, str(error))
    return "value", (type(value).__name__, repr(value))


def test_the_corpus_is_tutorial_sized():
    assert len(CASES) >= 50
    assert sum(case.refused for case in CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_same_answer_as_cpython_or_a_stated_refusal(db, case):
    expected = outcome(lambda: cpython(case.source))
    got = outcome(lambda: db.execute(case.source))
    if case.refused:
        assert expected[0] != "refused"
        assert got[0] == "refused", f"pyzdb answered {got!r}; CPython {expected!r}"
        assert STATED_RULES.search(str(got[1])), got[1]
    else:
        assert got == expected
