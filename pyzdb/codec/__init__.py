"""The wire codec: msgpack with pyzdb's markers, and the size model that restates its rules.

Imports only `errors`, `limits`, `values`, `plain` and `bulk` from pyzdb, so storage, the sandbox
and the client can all use it. `sizes` counts the bytes a value takes on the wire, so a result
budget is checked before anything is encoded.
"""

from pyzdb.codec.sizes import MARKED_TYPES, Measure, expanded_size, measure

__all__ = ["MARKED_TYPES", "Measure", "expanded_size", "measure"]
