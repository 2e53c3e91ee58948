"""Loader for sandbox/corpus: the hostile inputs every layer of pyzdb must refuse.

Each corpus file starts with header comments, then the source exactly as a client sends it::

    # mode: query            (db.query: one expression, read-only) or execute
    # expect: SecurityError  (a pyzdb.errors class name, SyntaxError or RecursionError)
    # why: what the input attacks
    # requires: store        (optional: store = the refusal comes from the read-only store;
                              engine = from the engine's result budget)

`SEED` is the data a replay loads before each case (the inputs refer to these keys).
tests/test_sandbox.py replays the corpus against `compile_request` + `run`; a replay through
the engine or a live server must also check that the tree is unchanged afterwards and that
the next request succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent.parent / "sandbox" / "corpus"

#: What a replay stores under the root before each case.
SEED: dict[str, object] = {
    "l": [1, 2, 3],
    "x": 1,
    "s": "text with {0} in it",
    "d": {"a": 1, "b": 2},
    "users": [{"name": "ann", "age": 31}, {"name": "bob", "age": 25}],
}

MODES = ("query", "execute")
EXPECTED = ("SecurityError", "LimitExceeded", "SyntaxError", "Error", "RecursionError")
REQUIREMENTS = ("store", "engine")


@dataclass(frozen=True)
class CorpusCase:
    """One hostile input. `syntax` is the compile mode: ``eval`` for a query, ``exec`` else."""

    name: str
    path: Path
    mode: str
    expect: str
    why: str
    source: str
    requires: str | None = None

    @property
    def syntax(self) -> str:
        return "eval" if self.mode == "query" else "exec"


def load_corpus(directory: Path = CORPUS_DIR) -> list[CorpusCase]:
    """Every ``NNN-name.py`` of `directory`, in order; a malformed header raises ValueError."""
    cases = []
    for path in sorted(directory.glob("[0-9][0-9][0-9]-*.py")):
        text = path.read_text(encoding="utf-8")
        headers: dict[str, str] = {}
        lines = text.splitlines(keepends=True)
        body_start = 0
        for index, line in enumerate(lines):
            key, sep, value = line.removeprefix("# ").partition(": ")
            if not line.startswith("# ") or not sep or key not in _HEADERS:
                break
            headers[key] = value.rstrip("\n")
            body_start = index + 1
        case = CorpusCase(
            name=path.stem,
            path=path,
            mode=headers.get("mode", ""),
            expect=headers.get("expect", ""),
            why=headers.get("why", ""),
            source="".join(lines[body_start:]),
            requires=headers.get("requires"),
        )
        if (
            case.mode not in MODES
            or case.expect not in EXPECTED
            or not case.why
            or (case.requires is not None and case.requires not in REQUIREMENTS)
        ):
            raise ValueError(f"{path}: bad corpus header {headers!r}")
        cases.append(case)
    return cases


_HEADERS = ("mode", "expect", "why", "requires")

__all__ = ["CorpusCase", "load_corpus", "SEED", "CORPUS_DIR"]
