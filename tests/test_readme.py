"""The README's sample session, run exactly as printed (doctest), in a fresh directory.

The session is the first thing a new user types; if it fails as printed, nothing else in the
README is believed. It runs with the working directory in a temporary path, as a user's
`python3` would in their project, so `./my-data` starts empty.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _session() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## A session", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's session has no ```python block"
    return match[1]


def test_the_readme_session_runs_as_printed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser = doctest.DocTestParser()
    test = parser.get_doctest(_session(), {}, "README session", str(README), 0)
    assert len(test.examples) >= 20
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    output: list[str] = []
    result = runner.run(test, out=output.append)
    assert result.failed == 0, "".join(output)
    assert (tmp_path / "my-data").is_dir()


def test_the_session_opens_another_directory_than_the_quick_start_server():
    """The quick-start server holds ./pyzdb-data: the session must not collide with it."""
    session = _session()
    assert "pyzdb-data" not in session
    assert 'pyzdb.open("./my-data")' in session
