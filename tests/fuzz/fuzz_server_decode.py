"""Fuzz target (atheris / libFuzzer): the server's decoding of one message, end to end.

    python tests/fuzz/fuzz_server_decode.py -max_total_time=10      # what the test suite runs
    python tests/fuzz/fuzz_server_decode.py -max_total_time=3600 corpus/   # a longer campaign

Each input is cut into frames (as a ROUTER hands them to `pyzdb-server`), then goes through
exactly what `Dispatcher.handle` does before it evaluates anything: the routing envelope split,
`request_id_of` and `decode_request` (which checks every field, lock control included). The
contract: a message is either a valid request or a `ProtocolError`; `request_id_of` never
raises. Any other exception, a crash or a hang is a finding (libFuzzer saves the input).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from pyzdb.errors import ProtocolError
    from pyzdb.net.messages import Request, decode_request, pack, request_id_of
    from pyzdb.server.router import split_envelope

MAX_MESSAGE = 1 << 16


def one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    count = provider.ConsumeIntInRange(1, 12)
    frames = [b"peer"] + [
        provider.ConsumeBytes(provider.ConsumeIntInRange(0, 64)) for _ in range(count - 1)
    ]
    frames.append(provider.ConsumeBytes(provider.remaining_bytes()))
    envelope, rest = split_envelope(frames)
    assert envelope and envelope[0] == b"peer"
    for body in rest:
        request_id = request_id_of(body)
        assert isinstance(request_id, int) and request_id >= 0
        try:
            decode_request(body, MAX_MESSAGE)
        except ProtocolError:
            pass


def seeds() -> list[bytes]:
    """Valid messages to start from: the test writes them to the corpus directory it passes."""
    return [
        pack(Request(7, "query", "db['x']")),
        pack(Request(2**40, "execute", "db['x'] = v", params={"v": [1]}, session=b"s" * 16)),
        pack(Request(1, "ping")),
    ]


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
