"""`pyzdb-eval`, run as the real console script against a data directory and a live server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from server_process import ServerProcess

EVAL = shutil.which("pyzdb-eval") or ""


def run_eval(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = (
        [EVAL]
        if EVAL
        else [
            sys.executable,
            "-c",
            "from pyzdb.cli.evaluate import eval_main; raise SystemExit(eval_main())",
        ]
    )
    return subprocess.run(
        [*command, *args], input=stdin, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(params=["data", "connect"])
def where(request, tmp_path):
    """The arguments that point `pyzdb-eval` at an embedded directory or a live server."""
    data = tmp_path / "data"
    if request.param == "data":
        yield ["--data", str(data)]
        return
    with ServerProcess(data) as server:
        yield ["--connect", server.uri]


def test_prints_the_repr_of_the_last_expression(where):
    done = run_eval(*where, "db['t'] = (1, 'a')\ndb['t']")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "(1, 'a')\n"


def test_writes_persist_between_runs(where):
    assert run_eval(*where, "db['n'] = 41").returncode == 0
    done = run_eval(*where, "db['n'] += 1\ndb['n']")
    assert done.stdout == "42\n"


def test_json_output_maps_what_json_lacks(where):
    done = run_eval(*where, "--json", "{'t': (1, 2), 'b': b'hi', 3: None}")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"t": [1, 2], "b": {"$bytes": "aGk="}, "3": None}


def test_statements_from_a_file_and_from_stdin(where, tmp_path):
    script = tmp_path / "script.py"
    script.write_text("total = 0\nfor i in range(5):\n    total += i\ntotal\n")
    assert run_eval(*where, "-f", str(script)).stdout == "10\n"
    assert run_eval(*where, "-f", "-", stdin="[1, 2][-1]\n").stdout == "2\n"


def test_an_error_goes_to_stderr_with_its_position_and_exit_status_1(where):
    done = run_eval(*where, "db['missing']")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("KeyError: 'missing'")
    assert "line 1" in done.stderr


def test_a_refusal_exits_1_and_names_the_rule(where):
    done = run_eval(*where, "().__class__")
    assert done.returncode == 1
    assert "SecurityError" in done.stderr
