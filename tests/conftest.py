"""Shared fixtures. `db` runs a behaviour test against every kind of database pyzdb offers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_process import ServerProcess

import pyzdb

#: embedded: `pyzdb.open` in this process; remote: `pyzdb.connect` to a live `pyzdb-server`.
DATABASE_KINDS = ["embedded", "remote"]


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture(params=DATABASE_KINDS)
def db(request, data_dir) -> Iterator[pyzdb.Database]:
    """A fresh, empty database of each kind.

    The remote kind starts a server process on `data_dir` for the test, and fails the test if
    that server did not exit cleanly (status 0 on SIGTERM) at the end: a server that crashed
    or hung under a behaviour test is a bug even when the test's own asserts passed.
    """
    if request.param == "embedded":
        database = pyzdb.open(data_dir)
        try:
            yield database
        finally:
            database.close()
        return
    server = ServerProcess(data_dir).start()
    try:
        connection = pyzdb.connect(server.uri)
        try:
            yield connection
        finally:
            connection.close()
        status = server.stop()
        assert status == 0, f"pyzdb-server exited with {status}:\n{server.log()}"
    finally:
        server.close()
