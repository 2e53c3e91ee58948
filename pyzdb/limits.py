"""The numbers and names several layers must agree on, each stated once.

A client checks a query before sending it with the same bounds the server enforces, so both
read them from here; nothing in this module imports the rest of pyzdb.
"""

from __future__ import annotations

from typing import Final

#: Longest query source, in UTF-8 bytes: data travels as parameters, not inside the text.
MAX_SOURCE: Final = 64 * 1024

#: The file name compiled queries carry: tracebacks and the budget's tick recognise their frames.
QUERY_FILENAME: Final = "<query>"

#: Deepest nesting of a stored value, counted from the root (and of a shipped parameter).
MAX_DEPTH: Final = 200

#: The name the stored tree has inside a query (`db['users']`), unless a lambda names it.
ROOT_NAME: Final = "db"

#: The scalar types: stored as they are, the only types allowed as dict keys (alone or in tuples),
#: and what a client ships without looking inside. Exact types only, so what is read back is what
#: was stored, type for type.
SCALAR_TYPES: Final[frozenset[type]] = frozenset({type(None), bool, int, float, str, bytes})

#: Where `pyzdb-server` listens and `pyzdb.connect()` looks when given no address.
DEFAULT_URI: Final = "tcp://127.0.0.1:5559"

__all__ = ["MAX_SOURCE", "QUERY_FILENAME", "MAX_DEPTH", "ROOT_NAME", "SCALAR_TYPES", "DEFAULT_URI"]
