"""What embedded and remote databases share on the caller's side: capture, the path proxy, watches.

No sandbox, no store, no sockets: both `pyzdb.open` and `pyzdb.connect` build on it.

The interface the databases implement (`DatabaseAPI`, with `QueryModel`, `PathProxy` and
`Transaction`) is `pyzdb.api.proxy`'s, re-exported here on first use: `import pyzdb` loads
this package (for `Change`), and the proxy's imports would make that slower for everyone.
"""

from typing import Any

_LAZY = frozenset({"DatabaseAPI", "QueryModel", "PathProxy", "Transaction", "READ_METHODS"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from pyzdb.api import proxy

        return getattr(proxy, name)
    raise AttributeError(f"module 'pyzdb.api' has no attribute {name!r}")


__all__ = ["DatabaseAPI", "QueryModel", "PathProxy", "Transaction", "READ_METHODS"]
