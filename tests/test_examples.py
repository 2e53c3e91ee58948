"""Every script in examples/ runs, and prints what its docstring says it shows.

Each runs as a user would run it: a subprocess, first with no argument (an embedded temp
directory; `asyncio_client.py` then starts its own server), then against a live server's URI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pyzdb

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 120

#: What each example prints, line by line; a line ending in "..." matches as a prefix.
EXPECTED = {
    "quickstart.py": [
        "users: 4",
        "over 40: ['alan', 'grace']",
        "ada is now 37",
        "undo: True",
        "ada is back to 36",
        "checkpoint written; the tree is {'users': [{'name': 'ada', 'age': 36}, "
        "{'name': 'alan', 'age': 41}, {'name': 'grace', 'age': 85}, "
        "{'name': 'linus', 'age': 28}]}",
    ],
    "seed_session.py": [
        "> db",
        "{}",
        "> db['x'] = 3",
        "> db['x']",
        "3",
        "> db['l'] = range(10)",
        "> db",
        "{'x': 3, 'l': [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}",
        "> db['l'][4] = ['a', 'b', 'c']",
        "> db.undo()",
        "True",
        "> db",
        "{'x': 3, 'l': [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}",
        "> db.undo()",
        "True",
        "> db.redo()",
        "True",
        "> db.redo()",
        "True",
        "> db",
        "{'x': 3, 'l': [0, 1, 2, 3, ['a', 'b', 'c'], 5, 6, 7, 8, 9]}",
        "> [v for v in db['l'][4]]",
        "['a', 'b', 'c']",
        "> [k for k in db]",
        "['x', 'l']",
        "> db['l'][4].append('d')",
        "> db.save()",
        "# the application part of the README",
        "x = 3",
        "odd_squares = [1, 9, 25, 49, 81]",
        "# the `lock` example: a read-modify-write nobody can interleave with",
        "x = 4",
    ],
    "locked_counter.py": [
        "counter = 100 (4 workers x 25 locked increments, none lost)",
        "a transaction that raised (changed my mind) is rolled back: counter = 100",
        "one request, atomic by itself: 101",
    ],
    "closure_query.py": [
        "older than 30: [('grace', 85), ('alan', 41), ('ada', 36)]",
        "older than 40: [('grace', 85), ('alan', 41)]",
        "older than 80: [('grace', 85)]",
        "string form, age=40: ['alan', 'grace']",
        "refused in the client: UnshippableValue: cannot ship free variable 'is_senior' "
        "(a function)...",
    ],
    "asyncio_client.py": [
        "odd squares: [1, 9, 25, 49, 81]",
        "sum: 55 length: 11",
        "hits after 20 concurrent increments: 20",
        "hits after the transaction: 200",
        "undo: True",
        "hits after undo: 20",
    ],
}


def run_example(name: str, *args: str) -> list[str]:
    """Run one example to the end; its stdout lines (it must exit 0 with nothing on stderr)."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def assert_lines(lines: list[str], expected: list[str]) -> None:
    assert len(lines) == len(expected), "\n".join(lines)
    for line, want in zip(lines, expected, strict=True):
        if want.endswith("..."):
            assert line.startswith(want[:-3]), line
        else:
            assert line == want


def test_every_example_is_tested():
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_default(name):
    assert_lines(run_example(name), EXPECTED[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_against_a_server(name, server):
    assert_lines(run_example(name, server.uri), EXPECTED[name])


def test_example_in_a_data_directory_keeps_its_data(tmp_path):
    data = tmp_path / "data"
    assert_lines(run_example("quickstart.py", str(data)), EXPECTED["quickstart.py"])
    with pyzdb.open(data) as db:
        assert db.query("[u['name'] for u in db['users']]") == ["ada", "alan", "grace", "linus"]
