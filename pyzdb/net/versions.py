"""Which versions of the protocol this peer speaks, and how a frame of another is refused.

Versioning rules:

1. In every version, a frame is a msgpack array whose first item is the protocol version as a
   positive fixint and whose second is the kind (0 request, 1 reply); a request's third is its
   id. A peer reads the version and kind bytes before it decodes anything else.
2. A change to a message's layout is a new version, which the messages of that layout carry.
   Requests are at version 2: `wait` and `txn` became fields (version 1 carried them in a
   query parameter that no query could then use). Replies have kept version 1's layout and
   carry 1, so a client of any version reads every reply. Within a version nothing is optional
   and no field is ignored.
3. A frame of another version is refused before it is decoded, with a `ProtocolError` that
   names both versions and the side to upgrade: a version-1 client reads the server's reply
   "client speaks protocol 1, this server speaks 2: upgrade pyzdb". A version-1 server refused
   a later request in words of its own, which `older_server_refusal` recognises for the client.
"""

from __future__ import annotations

import re
from typing import Final

from pyzdb.errors import ProtocolError
from pyzdb.net.errorinfo import ErrorInfo

#: The version of requests: what a client and a server speak (see the rules above).
PROTOCOL_VERSION: Final = 2
#: The version replies carry: their layout has not changed since version 1.
REPLY_VERSION: Final = 1
#: The kinds of message, the second item of every frame.
REQUEST_KIND: Final = 0
REPLY_KIND: Final = 1


def _head(view: memoryview) -> tuple[int, int | None]:
    """The version (rule 1) and the kind of a frame, read before anything is decoded. The kind
    is None unless its byte is a plain 0 or 1."""
    head = bytes(view[:7])
    offset = 1 if 0x91 <= head[0] <= 0x9F else {0xDC: 3, 0xDD: 5}.get(head[0])
    if offset is None or len(head) <= offset or head[offset] > 0x7F:
        raise ProtocolError(
            "not a pyzdb message: a frame is a msgpack array that opens with the protocol version"
        )
    kind = head[offset + 1] if len(head) > offset + 1 else None
    return head[offset], kind if kind in (REQUEST_KIND, REPLY_KIND) else None


def check_version(view: memoryview) -> None:
    """Refuse a frame of another version (rule 3) before decoding it; a frame that does not
    open as a message does (rule 1) is refused too.

    >>> check_version(memoryview(bytes((0x9A, 1, 0))))
    Traceback (most recent call last):
    ...
    pyzdb.errors.ProtocolError: client speaks protocol 1, this server speaks 2: upgrade pyzdb
    """
    version, kind = _head(view)
    if kind == REQUEST_KIND and version != PROTOCOL_VERSION:
        upgrade = "pyzdb" if version < PROTOCOL_VERSION else "the server's pyzdb"
        raise ProtocolError(
            f"client speaks protocol {version}, this server speaks {PROTOCOL_VERSION}: "
            f"upgrade {upgrade}"
        )
    if kind == REPLY_KIND and version != REPLY_VERSION:
        raise ProtocolError(
            f"the server replies in protocol {version}, this client reads replies of protocol "
            f"{REPLY_VERSION}: upgrade pyzdb"
        )
    if kind is None and version not in (PROTOCOL_VERSION, REPLY_VERSION):
        raise ProtocolError(
            f"protocol version {version} is not supported: this peer speaks requests of "
            f"version {PROTOCOL_VERSION} and replies of version {REPLY_VERSION}"
        )


#: How a server of protocol 1 refused a request of a later version: its own words, fixed since
#: that server is history.
_OLDER_SERVER: Final = re.compile(
    r"protocol version (\d+) is not supported; this peer speaks version (\d+)"
)


def older_server_refusal(info: ErrorInfo) -> ProtocolError | None:
    """The error a client raises when a server older than this protocol refused its request
    (rule 3), naming both versions; None for any other failure.

    >>> older_server_refusal(ErrorInfo("ProtocolError", (), "protocol version 2 is not "
    ...     "supported; this peer speaks version 1"))
    ProtocolError("client speaks protocol 2, the server speaks 1: upgrade the server's pyzdb")
    """
    found = _OLDER_SERVER.fullmatch(info.message) if info.type == "ProtocolError" else None
    if found is None or int(found[1]) != PROTOCOL_VERSION or int(found[2]) >= PROTOCOL_VERSION:
        return None
    return ProtocolError(
        f"client speaks protocol {PROTOCOL_VERSION}, the server speaks {found[2]}: "
        "upgrade the server's pyzdb"
    )


__all__ = [
    "PROTOCOL_VERSION",
    "REPLY_VERSION",
    "REQUEST_KIND",
    "REPLY_KIND",
    "check_version",
    "older_server_refusal",
]
