"""The hostile corpus of sandbox/ replayed through whole databases: embedded and a live server.

For every case: the request raises the expected refusal (a `pyzdb.Error`, or SyntaxError /
RecursionError where the corpus says so), the tree is byte-for-byte what it was, and the next
ordinary request is served. One database per kind serves the whole corpus, so a refusal that
left damage behind (a changed tree, a stuck lock, a dead server) fails the cases after it too.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterator

import pytest
from corpus import SEED, load_corpus
from server_process import open_database

import pyzdb
from pyzdb.api.capture import CaptureError
from pyzdb.plain import freeze
from pyzdb.sandbox import Budget

CASES = load_corpus()
EXPECTED_TYPES: dict[str, type[BaseException]] = {
    "SecurityError": pyzdb.SecurityError,
    "LimitExceeded": pyzdb.LimitExceeded,
    "SyntaxError": SyntaxError,
    "Error": pyzdb.Error,
    "RecursionError": RecursionError,
}


@pytest.fixture(scope="module", params=["embedded", "remote"])
def seeded(request, tmp_path_factory) -> Iterator[pyzdb.Database]:
    data_dir = tmp_path_factory.mktemp("hostile") / "data"
    # A 1 s time budget instead of the default 5: a third of the corpus runs until the time
    # budget stops it, and the rule under test is the same at any budget (the default's own
    # refusal is tested in test_first_hour.py).
    with open_database(
        request.param, data_dir, "--time-limit", "1", timeout=30.0, budget=Budget(time=1.0)
    ) as (database, server):
        _seed(database)
        yield database
        assert server is None or server.alive(), "the server died during the hostile replay"


def _seed(database: pyzdb.Database) -> None:
    database.execute("db.clear()\ndb.update(seed)", seed=SEED)


def _fingerprint(database: pyzdb.Database) -> bytes:
    """The whole tree, type for type and in key order, as bytes."""
    return marshal.dumps(freeze(database.get()))


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_input_is_refused_and_changes_nothing(seeded, case):
    before = _fingerprint(seeded)
    run = seeded.query if case.mode == "query" else seeded.execute
    # The client compiles before sending, so it may already refuse what the server would refuse
    # as a SecurityError (an async comprehension, a source over the size limit): refused either
    # way. tests/test_sandbox.py replays the same corpus against the server-side compiler alone.
    with pytest.raises((EXPECTED_TYPES[case.expect], SyntaxError, CaptureError)):
        run(case.source)
    assert _fingerprint(seeded) == before, f"{case.name} changed the tree"
    assert seeded.query("len(db['l']) + db['x']") == 4, "the next request was not served"
