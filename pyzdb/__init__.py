"""pyzdb: a small database for nested dict/list data whose query language is Python.

A tour (embedded; `pyzdb.connect(uri)` gives the same interface over the network)::

    >>> import pyzdb, tempfile
    >>> db = pyzdb.open(tempfile.mkdtemp())
    >>> db['l'] = list(range(10))
    >>> db.query("[v*v for v in db['l'] if v % 2]")
    [1, 9, 25, 49, 81]
    >>> db['l'].append(10)
    >>> len(db['l'])
    11
    >>> db.undo()
    True
    >>> db.execute("db['x'] = sum(db['l'])\\ndb['x'] * 2")
    90
    >>> db.close()
"""

from typing import Any

from pyzdb.api.changes import Change
from pyzdb.errors import (
    AuthenticationError,
    ConnectionError,
    Error,
    HistoryLost,
    LimitExceeded,
    LockTimeout,
    ProtocolError,
    ReadOnlyError,
    ReplicaBehind,
    SecurityError,
)
from pyzdb.values import File
from pyzdb.version import __version__

#: Imported on first use, so a program that only connects to a server never loads the engine
#: (nor RestrictedPython): the client does not know about the sandbox.
_LAZY = {
    "open": ".embedded",
    "Database": ".embedded",
    "connect": ".net.client",
    "sandbox_rules": ".sandbox.rules",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'pyzdb' has no attribute {name!r}")


__all__ = [
    "__version__",
    "open",
    "connect",
    "sandbox_rules",
    "Database",
    "File",
    "Error",
    "SecurityError",
    "LimitExceeded",
    "ConnectionError",
    "ProtocolError",
    "LockTimeout",
    "ReadOnlyError",
    "HistoryLost",
    "ReplicaBehind",
    "Change",
    "AuthenticationError",
]
