"""The wire, fuzzed: atheris on the decoding path, hypothesis against a live server.

- `test_the_decoding_fuzz_target_runs_clean`: libFuzzer (atheris) drives
  `tests/fuzz/fuzz_server_decode.py` for a fixed 10 s from seed messages; any exception other
  than ProtocolError, crash or hang fails it (libFuzzer exits non-zero and saves the input).
- `test_every_malformed_message_gets_an_error_reply`: hypothesis builds multipart messages --
  random frames, and valid requests with header fields replaced by huge integers, wrong types,
  or cut short -- and sends each to a real `pyzdb-server`: every one must be answered with a
  failed reply, and the server must still answer a ping and keep its data.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_process import ServerProcess

import pyzdb
from pyzdb.codec import MAX_REPLY_SIZE, MAX_REQUEST_SIZE
from pyzdb.net.messages import Request, decode_reply, decode_request, pack

FUZZ_TARGET = Path(__file__).resolve().parent / "fuzz" / "fuzz_server_decode.py"


def test_the_decoding_fuzz_target_runs_clean(tmp_path):
    sys.path.insert(0, str(FUZZ_TARGET.parent))
    try:
        from fuzz_server_decode import seeds
    finally:
        sys.path.remove(str(FUZZ_TARGET.parent))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, seed in enumerate(seeds()):
        (corpus / f"seed-{index}").write_bytes(seed)
    done = subprocess.run(
        [
            sys.executable,
            str(FUZZ_TARGET),
            "-max_total_time=10",
            "-timeout=5",
            "-rss_limit_mb=2048",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done" in done.stderr


# -- hypothesis against a live server ---------------------------------------------------------

HOSTILE_FIELDS = st.one_of(
    st.integers(min_value=2**53, max_value=2**64 - 1),
    st.integers(min_value=-(2**63), max_value=-1),
    st.floats(allow_nan=True),
    st.binary(max_size=40),
    st.text(max_size=40),
    st.builds(msgpack.ExtType, st.integers(min_value=0, max_value=127), st.binary(max_size=24)),
    st.lists(st.integers(min_value=-(2**63), max_value=2**64 - 1), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(min_value=0, max_value=9), max_size=3),
    st.none(),
    st.booleans(),
)


@st.composite
def malformed_bodies(draw) -> bytes:
    """A request frame with one header field replaced by something hostile, or cut short."""
    wire = list(
        msgpack.unpackb(
            pack(Request(5, "query", "1", session=b"s" * 16)),
            strict_map_key=False,
        )
    )
    choice = draw(st.sampled_from(["field", "cut", "extra", "random"]))
    if choice == "random":
        return draw(st.binary(min_size=0, max_size=200))
    if choice == "cut":
        body = msgpack.packb(wire, use_bin_type=True)
        return body[: draw(st.integers(min_value=0, max_value=len(body) - 1))]
    if choice == "extra":
        wire.append(draw(HOSTILE_FIELDS))
    else:
        index = draw(st.integers(min_value=0, max_value=len(wire) - 1))
        wire[index] = draw(HOSTILE_FIELDS)
    return msgpack.packb(wire, use_bin_type=True)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("fuzz") / "data") as server:
        database = pyzdb.connect(server.uri, timeout=10.0)
        database["keep"] = [1, 2, 3]
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(server.uri)
        yield server, database, sock
        sock.close()
        database.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bodies=st.lists(malformed_bodies(), min_size=1, max_size=3),
    extra_frames=st.lists(st.binary(max_size=8), max_size=2),
)
def test_every_malformed_message_gets_an_error_reply(live, bodies, extra_frames):
    server, database, sock = live
    for body in bodies:
        if body and protocol_accepts(body):
            continue  # a mutation that happens to be a valid request is not malformed
        sock.send_multipart([b"", *extra_frames, body])
        assert sock.poll(10_000), "the server did not answer a malformed message"
        reply = decode_reply(sock.recv_multipart()[-1], MAX_REPLY_SIZE)
        assert not reply.ok and reply.error is not None
    assert database["keep"].get() == [1, 2, 3]
    assert server.alive()


def protocol_accepts(body: bytes) -> bool:
    try:
        decode_request(body, MAX_REQUEST_SIZE)
    except pyzdb.Error:
        return False
    return True
