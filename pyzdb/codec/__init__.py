"""The msgpack codec of the data model: the wire format (`wire`, the encoder), the way back
(`decode`), and the size model (`sizes`), which restates the format's rules so that a result
budget is checked before anything is encoded. No sockets, no messages: the engine and the
storage use it as the network does. Imports only `errors`, `limits`, `values`, `plain` and
`bulk` from pyzdb. See README.md beside this file.
"""

from pyzdb.codec.decode import NOT_PLAIN, decode_plain, decode_value, decode_view, frame_view
from pyzdb.codec.sizes import MARKED_TYPES, Measure, expanded_size, measure
from pyzdb.codec.wire import (
    EXT_BIGINT,
    EXT_FILE,
    EXT_FROZENSET,
    EXT_SET,
    EXT_TUPLE,
    FILE_MARKER,
    MAX_COLLISIONS,
    MAX_REPLY_SIZE,
    MAX_REQUEST_SIZE,
    MAX_WIRE_DEPTH,
    Encoded,
    encode_array_header,
    encode_value,
    encode_wire,
    refusal,
    type_name,
)

__all__ = [
    "MAX_REQUEST_SIZE",
    "MAX_REPLY_SIZE",
    "MAX_WIRE_DEPTH",
    "MAX_COLLISIONS",
    "EXT_TUPLE",
    "EXT_SET",
    "EXT_FROZENSET",
    "EXT_BIGINT",
    "EXT_FILE",
    "FILE_MARKER",
    "NOT_PLAIN",
    "Encoded",
    "encode_value",
    "encode_wire",
    "encode_array_header",
    "decode_value",
    "decode_view",
    "decode_plain",
    "frame_view",
    "refusal",
    "type_name",
    "MARKED_TYPES",
    "Measure",
    "expanded_size",
    "measure",
]
