"""`pyzdb-keys` and the key files: what it writes, with which modes, and what it refuses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import zmq.auth

import pyzdb
from pyzdb.net import keys

KEYS_SCRIPT = Path(sys.executable).with_name("pyzdb-keys")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KEYS_SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_init_add_list_revoke_through_the_console_script(tmp_path):
    done = _run("init", "k", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _mode(tmp_path / "k" / "server.key_secret") == 0o600
    public, secret = zmq.auth.load_certificate(tmp_path / "k" / "server.key_secret")
    assert secret is not None
    assert zmq.auth.load_certificate(tmp_path / "k" / "server.key")[0] == public
    assert json.loads((tmp_path / "k" / "access.json").read_text())["keys"] == []

    done = _run("add", "k", "alice", "--role", "write", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    credential = tmp_path / "alice.pyzdb-key"
    assert _mode(credential) == 0o600
    loaded = keys.load_credential(credential)
    assert loaded.server == public and loaded.name == "alice"
    done = _run(
        "add",
        "k",
        "acme",
        "--role",
        "read",
        "--scope",
        "db['tenants']['acme']",
        "--out",
        str(tmp_path / "elsewhere.key"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert _mode(tmp_path / "elsewhere.key") == 0o600

    listing = _run("list", "k", cwd=tmp_path).stdout
    assert "alice\twrite\t-" in listing
    assert "acme\tread\tdb['tenants']['acme']" in listing
    # the server side holds the public half only
    access = (tmp_path / "k" / "access.json").read_text()
    assert loaded.public.decode() in access and loaded.secret.decode() not in access

    done = _run("revoke", "k", "alice", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "alice" not in _run("list", "k", cwd=tmp_path).stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (("add", "k", "bob", "--role", "write", "--scope", "db[x]"), "literal"),
        (("add", "k", "bob", "--role", "write", "--scope", "other['a']"), "start at db"),
        (("add", "k", "bob", "--role", "write", "--scope", "db"), "below db"),
        (("add", "k", "bob", "--role", "write", "--scope", "db['a'"), "not a path"),
        (("add", "k", "../evil", "--role", "write"), "key name"),
        (("add", "k", "alice", "--role", "read"), "exists"),
        (("revoke", "k", "nobody"), "no key named"),
        (("init", "k"), "already holds"),
        (("add", "missing", "bob", "--role", "read"), "does not exist"),
    ],
)
def test_bad_requests_are_refused_clearly_and_change_nothing(tmp_path, args, message):
    keys.init_keys(tmp_path / "k")
    keys.add_key(tmp_path / "k", "alice", "write", out=tmp_path / "alice.pyzdb-key")
    before = (tmp_path / "k" / "access.json").read_bytes()
    done = _run(*args, cwd=tmp_path)
    assert done.returncode == 1
    assert message in done.stderr
    assert (tmp_path / "k" / "access.json").read_bytes() == before
    assert not (tmp_path / "bob.pyzdb-key").exists()


def test_a_credential_file_is_never_overwritten(tmp_path):
    keys.init_keys(tmp_path / "k")
    target = tmp_path / "c.pyzdb-key"
    target.write_text("precious")
    with pytest.raises(keys.KeyFileError, match="exists"):
        keys.add_key(tmp_path / "k", "alice", "write", out=target)
    assert target.read_text() == "precious"
    assert keys.load_access(tmp_path / "k")[0] == {}


def test_a_credential_file_readable_by_others_is_refused(tmp_path):
    keys.init_keys(tmp_path / "k")
    credential = keys.add_key(tmp_path / "k", "alice", "write", out=tmp_path / "a.pyzdb-key")
    os.chmod(credential, 0o644)
    with pytest.raises(pyzdb.AuthenticationError, match="chmod 600"):
        pyzdb.connect("tcp://127.0.0.1:9", key=str(credential))
    with pytest.raises(pyzdb.AuthenticationError, match="does not exist"):
        pyzdb.connect("tcp://127.0.0.1:9", key=str(tmp_path / "missing.pyzdb-key"))
    not_a_key = tmp_path / "x.pyzdb-key"
    not_a_key.write_text('public-key = "short"\n')
    os.chmod(not_a_key, 0o600)
    with pytest.raises(pyzdb.AuthenticationError):
        pyzdb.connect("tcp://127.0.0.1:9", key=str(not_a_key))


def test_malformed_entries_are_skipped_and_reported(tmp_path):
    keys.init_keys(tmp_path / "k")
    keys.add_key(tmp_path / "k", "alice", "write", out=tmp_path / "a.pyzdb-key")
    path = tmp_path / "k" / "access.json"
    document = json.loads(path.read_text())
    document["keys"] += [
        {"name": "bad", "public": "x", "role": "write"},
        {"name": "worse", "public": document["keys"][0]["public"], "role": "god"},
        "junk",
    ]
    path.write_text(json.dumps(document))
    entries, problems = keys.load_access(tmp_path / "k")
    assert [entry.name for entry in entries.values()] == ["alice"]
    assert len(problems) == 3
    path.write_text("{not json")
    with pytest.raises(keys.KeyFileError, match="unreadable"):
        keys.load_access(tmp_path / "k")
