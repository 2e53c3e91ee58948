"""`pyzdb-server`: the ZeroMQ loop, its supervisor, locks, auth, feeds and replicas.

The map of the package is its README.md. The public names below are imported on first use,
not here: `pyzdb.embedded` reads the change feed (`pyzdb.server.changefeed`), and opening an
embedded database must not load ZeroMQ and the whole server through this file.
"""

from typing import Any

_LAZY = {
    "DEFAULT_DATA": ".options",
    "ReplyCache": ".sessions",
    "Server": ".loop",
    "ServerConfig": ".options",
    "Supervisor": ".supervisor",
    "check_bind": ".options",
    "server_main": ".main",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'pyzdb.server' has no attribute {name!r}")


__all__ = sorted(_LAZY)
