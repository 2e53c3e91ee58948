"""`pyzdb-server --keys`: real servers, real CURVE and ZAP, real key files.

Authentication (no key, wrong server key, unknown, revoked, bad file), roles per op, session
binding, reloads (file change, SIGHUP, corrupt list, under load) and binding a non-loopback
address.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from keyed import Keyring
from server_process import ServerProcess, free_tcp_uri

import pyzdb
import pyzdb.net.aio
from pyzdb.net import keys
from pyzdb.server import check_bind

#: A refused handshake must be reported long before the connection's timeout.
PROMPT = 2.0
TIMEOUT = 10.0


@pytest.fixture
def keyring(tmp_path) -> Keyring:
    return Keyring(tmp_path)


@pytest.fixture
def server(keyring, data_dir):
    with keyring.server(data_dir) as process:
        yield process


def _connect(server, keyring, name: str) -> pyzdb.Database:
    return pyzdb.connect(server.uri, timeout=TIMEOUT, key=keyring.key(name))


def _refused_promptly(call, match: str) -> None:
    started = time.monotonic()
    with pytest.raises(pyzdb.AuthenticationError, match=match):
        call()
    assert time.monotonic() - started < PROMPT, "the refusal waited for a timeout"


# -- authentication --------------------------------------------------------------------------


def test_a_listed_key_works_and_everything_else_is_refused_promptly(server, keyring, tmp_path):
    with _connect(server, keyring, "writer") as db:
        db["x"] = 1
        assert db.query("db['x']") == 1
    with pyzdb.connect(server.uri, timeout=TIMEOUT) as nokey:
        _refused_promptly(nokey.ping, "requires a key")
    other = Keyring(tmp_path / "other")  # same names, another server key
    with pyzdb.connect(server.uri, timeout=TIMEOUT, key=other.key("admin")) as wrong:
        _refused_promptly(wrong.ping, "server's key is not the one")
    unknown = _unlisted_credential(keyring, tmp_path / "unknown.pyzdb-key")
    with pyzdb.connect(server.uri, timeout=TIMEOUT, key=unknown) as stranger:
        _refused_promptly(lambda: stranger.execute("db['x'] = 2"), "unknown to that server")
        _refused_promptly(stranger.ping, "unknown")  # and again: never stuck, never retried
    with _connect(server, keyring, "reader") as db:
        assert db.query("db['x']") == 1
    assert "refused a CURVE handshake" in server.log()


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_a_handshake_that_failed_before_the_first_request_is_reported(
    server, keyring, tmp_path, kind
):
    """The socket connects when the connection is made; by the time of the first request its
    refused handshake made libzmq drop the peer. The request must not block on that socket."""
    other = Keyring(tmp_path / "other")
    for key in (None, other.key("admin")):
        if kind == "sync":
            with pyzdb.connect(server.uri, timeout=TIMEOUT, key=key) as db:
                time.sleep(0.5)
                _refused_promptly(db.ping, "handshake")
                _refused_promptly(db.ping, "handshake")  # and again, on the fresh socket
        else:

            async def main(key: str | None = key) -> None:
                async with pyzdb.net.aio.connect(server.uri, timeout=TIMEOUT, key=key) as db:
                    for _ in range(2):  # the second on a socket made by the first's refusal
                        await asyncio.sleep(0.5)
                        started = time.monotonic()
                        with pytest.raises(pyzdb.AuthenticationError, match="handshake"):
                            await db.ping()
                        assert time.monotonic() - started < PROMPT

            asyncio.run(main())


def _unlisted_credential(keyring: Keyring, path: Path) -> str:
    """A well-formed credential with the right server key whose key is on no access list."""
    keyring.add("stranger", "admin")
    keys.revoke_key(keyring.dir, "stranger")
    os.replace(keyring.key("stranger"), path)
    return str(path)


def test_the_asyncio_client_uses_keys_too(server, keyring):
    async def main() -> None:
        async with pyzdb.net.aio.connect(
            server.uri, timeout=TIMEOUT, key=keyring.key("writer")
        ) as db:
            await db.execute("db['a'] = [1, 2]")
            assert await db.query("len(db['a'])") == 2
        async with pyzdb.net.aio.connect(server.uri, timeout=TIMEOUT) as nokey:
            started = time.monotonic()
            with pytest.raises(pyzdb.AuthenticationError, match="requires a key"):
                await nokey.ping()
            assert time.monotonic() - started < PROMPT
        async with pyzdb.net.aio.connect(
            server.uri, timeout=TIMEOUT, key=keyring.key("reader")
        ) as db:
            with pytest.raises(pyzdb.SecurityError, match="needs the write role"):
                await db.execute("db['a'] = 0")
            assert await db.query("db['a']") == [1, 2]

    asyncio.run(main())


def test_the_key_comes_from_the_environment(server, keyring, monkeypatch):
    monkeypatch.setenv("PYZDB_KEY", keyring.key("writer"))
    with pyzdb.connect(server.uri, timeout=TIMEOUT) as db:
        db["env"] = True
    monkeypatch.setenv("PYZDB_KEY", keyring.key("reader"))
    done = subprocess.run(
        [str(Path(sys.executable).with_name("pyzdb-eval")), "--connect", server.uri, "db['env']"],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"PYZDB_KEY": ""},
    )
    assert done.returncode == 1 and "AuthenticationError" in done.stderr
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("pyzdb-eval")),
            "--connect",
            server.uri,
            "--key",
            keyring.key("writer"),
            "db['env']",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_a_revoked_key_is_refused_on_new_and_open_connections(server, keyring):
    writer = _connect(server, keyring, "writer")
    writer["x"] = 1
    keys.revoke_key(keyring.dir, "writer")
    with pytest.raises(pyzdb.AuthenticationError, match="revoked"):
        writer.execute("db['x'] = 2")  # the open connection, at its very next message
    with pytest.raises(pyzdb.AuthenticationError, match="revoked"):
        writer.query("db['x']")
    writer.close()
    with _connect(server, keyring, "writer") as again:
        _refused_promptly(again.ping, "unknown to that server or was revoked")
    with _connect(server, keyring, "admin") as admin:
        assert admin.query("db['x']") == 1  # the refused write changed nothing


# -- roles -----------------------------------------------------------------------------------

#: op -> (the least role it needs, a call that performs it)
OPERATIONS = {
    "query": ("read", lambda db: db.query("len(db)")),
    "history": ("read", lambda db: db.history()),
    "ping": ("read", lambda db: db.ping()),
    "blob": ("read", lambda db: db.query("db['file']").read()),
    "execute": ("write", lambda db: db.execute("db['n'] = 99")),
    "proxy write": ("write", lambda db: db["l"].append(5)),
    "undo": ("write", lambda db: db.undo()),
    "redo": ("write", lambda db: db.redo()),
    "transaction": ("write", lambda db: db.lock(timeout=5)),
    "checkpoint": ("admin", lambda db: db.checkpoint()),
}
LEVELS = {"read": 0, "write": 1, "admin": 2}


@pytest.mark.parametrize("name", ["reader", "writer", "admin"])
def test_each_role_is_allowed_and_refused_per_operation(server, keyring, name):
    with _connect(server, keyring, "admin") as admin:
        admin.execute(
            "db['l'] = [1]\ndb['file'] = pyzdb_file",
            pyzdb_file=pyzdb.File(data=b"blob bytes", name="b.bin"),
        )
        admin.execute("db['l'].append(2)")
        admin.undo()  # something to redo
        before = admin.get()
    role = keyring_role = {"reader": "read", "writer": "write", "admin": "admin"}[name]
    with _connect(server, keyring, name) as db:
        for op, (needs, call) in OPERATIONS.items():
            if LEVELS[role] >= LEVELS[needs]:
                call(db)
                if op == "transaction":
                    db.unlock()
            else:
                with pytest.raises(pyzdb.SecurityError, match=f"needs the {needs} role") as info:
                    call(db)
                assert f"has the {keyring_role} role" in str(info.value)
    if role == "read":
        with _connect(server, keyring, "admin") as admin:
            assert admin.get() == before  # every refusal changed nothing


# -- sessions bound to keys ------------------------------------------------------------------


def test_another_key_cannot_replay_or_read_a_request_by_its_session(server, keyring):
    alice = _connect(server, keyring, "writer")
    mallory = pyzdb.connect(server.uri, timeout=2.0, key=keyring.key("admin"))
    try:
        assert alice.execute("db['x'] = 1\n'reply-for-alice'") == "reply-for-alice"
        # mallory forges alice's session and request id: the reply cache must not answer her
        mallory._core.session = alice._core.session
        mallory._core._ids = itertools.count(1)
        assert mallory.query("'reply-for-mallory'") == "reply-for-mallory"
        # nor may she commit the lock alice holds under that session: she waits like anyone
        alice.lock()
        alice.execute("db['x'] = 2")
        with pytest.raises(pyzdb.LockTimeout, match="locked by another connection"):
            mallory._exchange(mallory._core.prepare("unlock"))
        alice.rollback()
        assert alice.query("db['x']") == 1
    finally:
        alice.close()
        mallory.close()


# -- reloading the access list -----------------------------------------------------------------


def test_sighup_reloads_and_a_corrupt_list_refuses_every_key(server, keyring):
    admin = _connect(server, keyring, "admin")
    admin["x"] = 1
    access = keyring.dir / "access.json"
    good = access.read_bytes()
    access.write_text("{ this is not json")
    os.kill(server.pid, signal.SIGHUP)
    with pytest.raises(pyzdb.AuthenticationError):
        admin.query("db['x']")  # the open connection: its key can no longer be read
    assert "reloading the access list failed" in server.log()
    # a new key added by writing the file: picked up without a signal
    access.write_bytes(good)
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            assert admin.query("db['x']") == 1
            break
        except pyzdb.AuthenticationError:
            assert time.monotonic() < deadline, "the fixed list was never reloaded"
            time.sleep(0.05)
    os.kill(server.pid, signal.SIGHUP)  # a reload with nothing changed keeps serving
    assert admin.query("db['x']") == 1
    admin.close()


def test_reload_under_load_loses_no_request(server, keyring):
    errors: list[BaseException] = []
    done = [0]
    stop = threading.Event()

    def client(name: str) -> None:
        try:
            with _connect(server, keyring, name) as db:
                while not stop.is_set():
                    db.execute("db[me] = db.get(me, 0) + 1", me=name)
                    done[0] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(name,)) for name in ("admin", "writer")]
    for thread in threads:
        thread.start()
    for index in range(20):
        keyring.add(f"extra{index}", "read")
        os.kill(server.pid, signal.SIGHUP)
        time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    with _connect(server, keyring, "extra19") as db:
        counts = db.query("db['admin'] + db['writer']")
    assert counts == done[0] > 20
    assert server.log().count("access list reloaded") >= 2


def test_the_server_refuses_to_start_on_a_corrupt_or_unsafe_keys_dir(keyring, data_dir):
    access = keyring.dir / "access.json"
    access.write_text(json.dumps({"format": "something else", "keys": []}))
    process = ServerProcess(data_dir, "--keys", str(keyring.dir), script=True)
    try:
        with pytest.raises(RuntimeError, match="not a pyzdb-access/1 file"):
            process.start(timeout=20)
        assert process.process.returncode == 2
    finally:
        process.close()
    keyring_ok = json.dumps({"format": "pyzdb-access/1", "keys": []})
    access.write_text(keyring_ok)
    os.chmod(keyring.dir / "server.key_secret", 0o644)
    process = ServerProcess(data_dir, "--keys", str(keyring.dir))
    try:
        with pytest.raises(RuntimeError, match="chmod 600"):
            process.start(timeout=20)
    finally:
        process.close()


# -- binding -----------------------------------------------------------------------------------


def test_a_non_loopback_bind_needs_keys():
    with pytest.raises(ValueError, match="--keys"):
        check_bind("tcp://0.0.0.0:5559")
    check_bind("tcp://0.0.0.0:5559", keys=True)
    check_bind("tcp://0.0.0.0:5559", insecure=True)


def test_bind_all_interfaces_with_keys_and_connect_over_loopback(keyring, data_dir):
    port = free_tcp_uri().rsplit(":", 1)[1]
    process = ServerProcess(
        data_dir,
        "--keys",
        str(keyring.dir),
        "--bind",
        f"tcp://0.0.0.0:{port}",
        key=keyring.key("admin"),
    )
    process.uri = f"tcp://127.0.0.1:{port}"  # only loopback traffic: nothing leaves the machine
    with process:
        with pytest.raises(OSError):  # the address really is bound on every interface
            with socket.socket() as probe:
                probe.bind(("0.0.0.0", int(port)))
        with pyzdb.connect(process.uri, timeout=TIMEOUT, key=keyring.key("writer")) as db:
            db["over"] = "curve"
            assert db.query("db['over']") == "curve"
        with pyzdb.connect(process.uri, timeout=TIMEOUT) as nokey:
            _refused_promptly(nokey.ping, "requires a key")
    without = ServerProcess(data_dir, "--bind", f"tcp://0.0.0.0:{port}", script=True)
    try:
        with pytest.raises(RuntimeError, match="not a loopback address"):
            without.start(timeout=20)
    finally:
        without.close()


# -- the command line tools ----------------------------------------------------------------------


def test_the_repl_and_pyzdb_bench_take_a_key(server, keyring, tmp_path):
    repl = subprocess.run(
        [str(Path(sys.executable).with_name("pyzdb")), server.uri, "--key", keyring.key("writer")],
        input="db['r'] = 41\ndb['r'] + 1\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"HOME": str(tmp_path)},
    )
    assert repl.returncode == 0, repl.stderr
    assert "42" in repl.stdout
    bench = subprocess.run(
        [
            str(Path(sys.executable).with_name("pyzdb-bench")),
            server.uri,
            "--quick",
            "-c",
            "1",
            "-n",
            "10",
            "--tests",
            "get",
            "--force",
            "--key",
            keyring.key("writer"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bench.returncode == 0, bench.stderr
    refused = subprocess.run(
        [
            str(Path(sys.executable).with_name("pyzdb-bench")),
            server.uri,
            "--quick",
            "-c",
            "1",
            "-n",
            "10",
            "--tests",
            "get",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PYZDB_KEY": ""},
    )
    assert refused.returncode == 1 and "requires a key" in refused.stderr


def test_every_op_of_the_protocol_has_a_role_on_purpose():
    """An op missing from OP_ROLES needs admin (deny by default); a new op must be classified
    deliberately, and a scoped key must not reach it unless pyzdb.server.tenancy confines it."""
    from pyzdb.net.messages import OPS
    from pyzdb.server.auth import OP_ROLES

    assert set(OPS) <= set(OP_ROLES), sorted(set(OPS) - set(OP_ROLES))
    assert set(OP_ROLES.values()) <= {"read", "write", "admin"}
