"""Shared fixtures.

`db` runs a behaviour test against every kind of database pyzdb offers; `server` is a live
`pyzdb-server`. Every server a test starts is held as `with ServerProcess(...) as server:`
(`server_process`): leaving the block fails the test unless the server exited cleanly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from server_process import ServerProcess, open_database

import pyzdb

#: embedded: `pyzdb.open` in this process; remote: `pyzdb.connect` to a live `pyzdb-server`.
DATABASE_KINDS = ["embedded", "remote"]

#: Scripts the suite runs as processes, never imports: `--doctest-modules` (pyproject.toml)
#: would import them into the test process, where the fuzz target instruments its imports with
#: atheris (10 s) and the bench scripts put their folder on `sys.path`.
collect_ignore_glob = ["fuzz/*.py", "bench/*.py", "crash_writer.py"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def server(data_dir: Path) -> Iterator[ServerProcess]:
    """A live `pyzdb-server` on `data_dir`, on `ipc://` in a fresh temp dir; the test fails if
    it did not exit cleanly (status 0 on SIGTERM) at the end."""
    with ServerProcess(data_dir) as running:
        yield running


@dataclass
class Live:
    """The database `db` hands a test, and what holds its data (a server for the remote kind)."""

    database: pyzdb.Database
    data_dir: Path
    server: ServerProcess | None = None

    def restart(self) -> pyzdb.Database:
        """The same data after a restart. The embedded kind closes the directory and opens it
        again; the remote kind stops the server (cleanly) and starts it again while the client
        stays connected, as the seed's README promised: "the server can be stopped and
        restarted to continue the session (without needing to restart the client)"."""
        if self.server is None:
            self.database.close()
            self.database = pyzdb.open(self.data_dir)
            return self.database
        status = self.server.stop()
        assert status == 0, f"pyzdb-server exited with {status}:\n{self.server.log()}"
        self.server.restart()
        return self.database


@pytest.fixture(params=DATABASE_KINDS)
def live(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[Live]:
    """A fresh, empty database of each kind. The remote kind's server runs on `data_dir` for
    the test: a server that crashed or hung under a behaviour test is a bug even when the
    test's own asserts passed."""
    with open_database(request.param, data_dir) as (database, server):
        held = Live(database, data_dir, server)
        try:
            yield held
        finally:
            held.database.close()  # the one `restart` opened, if it did


@pytest.fixture
def db(live: Live) -> pyzdb.Database:
    """A fresh, empty database of each kind (`live`)."""
    return live.database


@pytest.fixture
def restart(live: Live) -> Callable[[], pyzdb.Database]:
    """`restart()` restarts what holds `db`'s data and returns the database to go on with."""
    return live.restart
