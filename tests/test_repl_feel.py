"""The `pyzdb` REPL feels like Python's: meta commands, completion, display, timing, pipes.

Driven as a person does (a real pseudo-terminal, `Terminal` from test_repl) and as scripts do
(a pipe); also Python's own prompt capturing a typed lambda.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from test_repl import PYZDB, TIMEOUT, Terminal, repl

HAS_READLINE = importlib.util.find_spec("readline") is not None


@pytest.fixture
def terminal(tmp_path):
    data = tmp_path / "data"
    seeded = subprocess.run(
        [str(PYZDB), "--data", str(data)],
        input="db['users'] = [{'name': 'ann', 'age': 31}]\ndb['usage'] = 1\n"
        "db['big'] = [{'i': i, 'text': 'x' * 20} for i in range(100_000)]\n",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert seeded.returncode == 0, seeded.stderr
    term = Terminal(["--data", str(data)], tmp_path)
    term.expect(">>> ")
    try:
        yield term
    finally:
        if term.process.poll() is None:
            term.process.kill()
        os.close(term.master)


def test_help_info_and_connection_calls_at_a_terminal(terminal):
    terminal.send("help\n")
    assert "Meta commands" in terminal.expect(">>> ")
    terminal.send("help()\n")
    assert "Meta commands" in terminal.expect(">>> ")
    terminal.send("db.keys()\n")
    assert "['users', 'usage', 'big']" in terminal.expect(">>> ")
    terminal.send("db.ping()\n")
    assert "Error" not in terminal.expect(">>> ")
    terminal.send("info\n")
    shown = terminal.expect(">>> ")
    assert "# journal" in shown and "top_level_keys: 3" in shown
    terminal.send("lenn(db)\n")
    assert "did you mean 'len'?" in terminal.expect(">>> ")
    terminal.send("exit\n")
    assert terminal.process.wait(TIMEOUT) == 0


def test_long_values_are_pretty_printed_and_cut_and_full_shows_all(terminal):
    terminal.send("db['big']\n")
    shown = terminal.expect(">>> ")
    assert ".full prints all of it" in shown
    assert len(shown.splitlines()) < 60
    assert "'i': 99999" not in shown
    terminal.send(".full\n")
    assert "'i': 99999" in terminal.expect(">>> ", timeout=60)
    terminal.send("quit\n")
    assert terminal.process.wait(TIMEOUT) == 0


def test_timer_prints_a_run_time_line(terminal):
    terminal.send(".timer on\n")
    terminal.expect(">>> ")
    terminal.send("sum(range(10))\n")
    shown = terminal.expect(">>> ")
    assert "45" in shown and "Run Time: " in shown
    terminal.send(".timer off\n")
    terminal.expect(">>> ")
    terminal.send("sum(range(10))\n")
    assert "Run Time" not in terminal.expect(">>> ")


@pytest.mark.skipif(not HAS_READLINE, reason="completion needs readline")
def test_tab_completes_keys_builtins_and_methods_and_indents(terminal):
    terminal.send("db['us\t")  # 'users' and 'usage': nothing unique to add yet
    terminal.expect("db['us")
    terminal.send("e\t")  # 'use' leaves one
    terminal.expect("rs']")
    terminal.send("[0]['na\t")
    terminal.expect("me']")
    terminal.send("\n")
    assert "'ann'" in terminal.expect(">>> ")
    terminal.send("sor\t")
    terminal.expect("sorted")
    terminal.send("(db['users'][0]['name'].upp\t")
    terminal.expect("upper(")
    terminal.send("))\n")
    assert "['A', 'N', 'N']" in terminal.expect(">>> ")
    terminal.send("for c in 'ab':\n")
    terminal.expect("... ")
    terminal.send("\tdb['usage'] += 1\n")  # Tab at the margin indents the block's line
    terminal.expect("... ")
    terminal.send("\n")
    terminal.expect(">>> ")
    terminal.send("db['usage']\n")
    assert "3" in terminal.expect(">>> ")


# -- pipes ----------------------------------------------------------------------------------------


def test_piped_input_with_an_error_exits_1(tmp_path):
    result = repl(
        ["--data", str(tmp_path / "data")], "db['x'] = 1\ndb['nope']\ndb['x']\n", tmp_path
    )
    assert result.stdout == "1\n"
    assert "KeyError" in result.stderr
    assert result.returncode == 1
    clean = repl(["--data", str(tmp_path / "data")], "db['x']\n", tmp_path)
    assert clean.returncode == 0


@pytest.mark.parametrize("tool", ["repl", "eval"])
def test_a_closed_pipe_ends_quietly(tmp_path, tool):
    data = str(tmp_path / "data")
    if tool == "repl":
        command = [str(PYZDB), "--data", data]
        feed = b"for i in range(3):\n    db[str(i)] = list(range(100_000))\n\n" + b"db['0']\n" * 50
    else:
        command = [
            str(PYZDB.with_name("pyzdb-eval")),
            "--data",
            data,
            "[list(range(1000)) for i in range(2000)]",
        ]
        feed = b""
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert process.stdout is not None and process.stdin is not None
    process.stdin.write(feed)
    process.stdin.close()
    process.stdout.read(100)  # `| head -c 100`
    process.stdout.close()
    status = process.wait(TIMEOUT)
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert status == 141


def test_rules_and_version(tmp_path):
    done = subprocess.run([str(PYZDB), "--rules"], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0 and "Builtins:" in done.stdout and "str: " in done.stdout


# -- Python's own prompt --------------------------------------------------------------------------


class PythonPrompt(Terminal):
    """`python3 -i` on a pseudo-terminal, read and written like the `pyzdb` Terminal."""

    def __init__(self, home):
        self.master, slave = os.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-i", "-q"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
            cwd=home,
            env={**os.environ, "HOME": str(home), "TERM": "dumb", "PYTHONSTARTUP": ""},
        )
        os.close(slave)
        self.seen = ""


@pytest.mark.skipif(not HAS_READLINE, reason="the plain prompt keeps lines only with readline")
def test_a_lambda_typed_at_the_plain_python_prompt(tmp_path):
    """`python3` at a terminal: the README's lambda works as typed, on one line or two."""
    term = PythonPrompt(tmp_path)
    master = term.master
    try:
        term.expect(">>> ")
        term.send("import pyzdb; db = pyzdb.open('my-data'); db['l'] = [1, 2, 3]\n")
        term.expect(">>> ")
        term.send("db.query(lambda db: [v * v for v in db['l'] if v % 2])\n")
        assert "[1, 9]" in term.expect(">>> ")
        term.send("db.query(\n")
        term.expect("... ")
        term.send("    lambda db: sum(db['l']))\n")
        assert "\n6\n" in term.expect(">>> ")
        term.send("db.close(); exit()\n")
        assert term.process.wait(TIMEOUT) == 0
    finally:
        if term.process.poll() is None:
            term.process.kill()
        os.close(master)
