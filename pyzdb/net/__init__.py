"""The wire and the client side of it: messages, `pyzdb.connect` (sync and asyncio), keys.

Never imports `sandbox`, `storage`, the engine or `server`: a client loads no RestrictedPython.

This `__init__` re-exports the messages only (`messages`, `versions`, `errorinfo`: msgpack and
nothing else), because importing any module of the package runs it: the server and the storage read
messages without loading ZeroMQ or the clients. The clients are `pyzdb.connect` (`client`)
and `pyzdb.aio` (`aio`); `README.md` beside this file maps the modules.
"""

from pyzdb.net.errorinfo import ErrorInfo, error_to_info, info_to_exception
from pyzdb.net.messages import (
    MAX_SESSION_BYTES,
    MAX_WAIT,
    OPS,
    REQUEST_FIELDS,
    SYNTAXES,
    Reply,
    Request,
    decode_reply,
    decode_request,
    pack,
    pack_value_reply,
    request_id_of,
    unpack,
)
from pyzdb.net.versions import PROTOCOL_VERSION, REPLY_VERSION, older_server_refusal

__all__ = [
    "PROTOCOL_VERSION",
    "REPLY_VERSION",
    "MAX_SESSION_BYTES",
    "MAX_WAIT",
    "OPS",
    "SYNTAXES",
    "REQUEST_FIELDS",
    "Request",
    "Reply",
    "ErrorInfo",
    "pack",
    "pack_value_reply",
    "unpack",
    "decode_request",
    "decode_reply",
    "request_id_of",
    "older_server_refusal",
    "error_to_info",
    "info_to_exception",
]
