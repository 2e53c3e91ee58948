"""Key files and the access list: what `pyzdb-keys` (`pyzdb.cli.keys`) writes and the server reads.

A keys directory holds what a `pyzdb-server --keys DIR` needs, in pyzmq's certificate format
(`zmq.auth.create_certificates` / `zmq.auth.load_certificate`), so the files work with any
ZeroMQ tool:

- `server.key` (public, mode 0644) and `server.key_secret` (mode 0600): the server's CURVE
  keypair. Clients need only the public half, which `add` copies into each credential file.
- `access.json`: one entry per client key: its name, public key (Z85), role and optional scope.
  It holds no secrets; it is rewritten whole (temp file, fsync, rename) so a running server
  that re-reads it never sees half of it.

A *credential file* (`NAME.pyzdb-key`, mode 0600) is what a client gets: its own keypair plus
the server's public key. It is the only copy of the client's secret key: the server keeps the
public half alone. Anything readable by others is refused, as ssh refuses an unprotected key.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from pyzdb.errors import AuthenticationError

SERVER_PUBLIC = "server.key"
SERVER_SECRET = "server.key_secret"
ACCESS_LIST = "access.json"
#: The access list's format marker: a file without it is not ours.
ACCESS_FORMAT = "pyzdb-access/1"
ROLES = ("read", "write", "admin")
#: Key names become file names and log words: keep them plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_Z85_KEY = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}\Z")


class KeyFileError(ValueError):
    """A keys directory, access list or credential file is missing, malformed or unsafe."""


@dataclass(frozen=True)
class AccessEntry:
    """One client key on the access list."""

    name: str
    public: str
    role: str
    scope: tuple[Any, ...] | None = None
    #: The scope as the operator wrote it (`db['tenants']['acme']`), for people.
    scope_text: str | None = None


@dataclass(frozen=True)
class Credential:
    """What a client needs to connect with a key (see `load_credential`)."""

    path: str
    name: str
    public: bytes
    secret: bytes
    server: bytes


# -- scopes --------------------------------------------------------------------------------------


def parse_scope(text: str) -> tuple[Any, ...]:
    """`"db['tenants']['acme']"` -> `('tenants', 'acme')`: a chain of constant subscripts of db.

    Keys may be str, int or bytes literals; anything else (a name, a call, a slice) is refused,
    so a scope is a fixed path, never code.
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise KeyFileError(
            f"scope {text!r} is not a path like db['tenants']['acme']: {exc.msg}"
        ) from None
    keys: list[Any] = []
    while isinstance(node, ast.Subscript):
        key = node.slice
        if not (isinstance(key, ast.Constant) and type(key.value) in (str, int, bytes)):
            raise KeyFileError(f"scope {text!r}: each key must be a str, int or bytes literal")
        keys.append(key.value)
        node = node.value
    if not (isinstance(node, ast.Name) and node.id == "db"):
        raise KeyFileError(f"scope {text!r} must start at db, like db['tenants']['acme']")
    if not keys:
        raise KeyFileError("a scope must name a subtree below db, like db['tenants']['acme']")
    return tuple(reversed(keys))


def scope_text(path: tuple[Any, ...]) -> str:
    return "db" + "".join(f"[{key!r}]" for key in path)


# -- reading ---------------------------------------------------------------------------------------


def _check_private(path: Path, what: str) -> None:
    """Refuse a secret file that others may read or write (mode must be 0600 or stricter)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path} does not exist") from None
    if mode & 0o077:
        raise KeyFileError(
            f"{what} {path} is accessible by others (mode {stat.S_IMODE(mode):04o}): it holds a "
            f"secret key; run `chmod 600 {path}`"
        )


def load_server_keys(directory: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """The server's (public, secret) key from `DIR/server.key_secret` (mode 0600 required)."""
    import zmq.auth  # here, not at the top: it imports asyncio (~50 ms), the client need not

    path = Path(directory) / SERVER_SECRET
    _check_private(path, "the server's secret key file")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read {path}: {exc}") from None
    if secret is None or not _Z85_KEY.match(secret.decode("ascii", "replace")):
        raise KeyFileError(f"{path} holds no valid secret key")
    return public, secret


def load_access(directory: str | os.PathLike[str]) -> tuple[dict[str, AccessEntry], list[str]]:
    """The access list by public key, and a line per entry that was skipped as malformed.

    A file that cannot be read or parsed at all raises KeyFileError: the caller must then trust
    no key (the server refuses them all until a reload succeeds), never the previous list.
    """
    path = Path(directory) / ACCESS_LIST
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise KeyFileError(
            f"the access list {path} does not exist: run `pyzdb-keys init`"
        ) from None
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"the access list {path} is unreadable: {exc}") from None
    if not (
        isinstance(document, dict)
        and document.get("format") == ACCESS_FORMAT
        and isinstance(document.get("keys"), list)
    ):
        raise KeyFileError(f"the access list {path} is not a {ACCESS_FORMAT} file")
    entries: dict[str, AccessEntry] = {}
    problems: list[str] = []
    names: set[str] = set()
    for index, item in enumerate(document["keys"]):
        try:
            entry = _entry(item)
        except (KeyFileError, TypeError, AttributeError) as exc:
            problems.append(f"entry {index} skipped: {exc}")
            continue
        if entry.name in names or entry.public in entries:
            problems.append(f"entry {index} skipped: name or key {entry.name!r} is listed twice")
            continue
        names.add(entry.name)
        entries[entry.public] = entry
    return entries, problems


def _entry(item: Any) -> AccessEntry:
    if not isinstance(item, dict):
        raise KeyFileError("not an object")
    name, public, role = item.get("name"), item.get("public"), item.get("role")
    if not (isinstance(name, str) and _NAME.match(name)):
        raise KeyFileError(f"bad name {name!r}")
    if not (isinstance(public, str) and _Z85_KEY.match(public)):
        raise KeyFileError(f"key {name!r}: bad public key")
    if role not in ROLES:
        raise KeyFileError(f"key {name!r}: role {role!r} is not one of {', '.join(ROLES)}")
    text = item.get("scope")
    if text is None:
        return AccessEntry(name, public, role)
    if not isinstance(text, str):
        raise KeyFileError(f"key {name!r}: the scope must be a string")
    return AccessEntry(name, public, role, parse_scope(text), text)


def load_credential(path: str | os.PathLike[str]) -> Credential:
    """A client credential file, refused (AuthenticationError) unless it is private (0600)."""
    import zmq.auth

    file = Path(path)
    try:
        _check_private(file, "the key file")
        public, secret = zmq.auth.load_certificate(file)
        server = _field(file, b"server-key")
    except (KeyFileError, OSError, ValueError) as exc:
        raise AuthenticationError(str(exc)) from None
    name = (_field(file, b"name") or b"?").decode("utf-8", "replace")
    for what, key in (("public-key", public), ("secret-key", secret), ("server-key", server)):
        if key is None or not _Z85_KEY.match(key.decode("ascii", "replace")):
            raise AuthenticationError(
                f"the key file {file} has no valid {what}: is it a pyzdb-keys credential file?"
            )
    assert secret is not None and server is not None
    return Credential(str(file), name, public, secret, server)


def _field(path: Path, name: bytes) -> bytes | None:
    """One `name = "value"` line of a ZPL certificate file (zmq.auth reads only its keys)."""
    with open(path, "rb") as handle:
        for line in handle:
            left, sep, right = line.strip().partition(b"=")
            if sep and left.strip() == name:
                return right.strip().strip(b"'\"")
    return None


# -- writing ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One `pyzdb-keys` writer at a time per directory (flock on `DIR/.lock`)."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_access(directory: Path, entries: list[dict[str, Any]]) -> None:
    document = {"format": ACCESS_FORMAT, "keys": entries}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".access-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / ACCESS_LIST)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _raw_entries(directory: Path) -> list[dict[str, Any]]:
    load_access(directory)  # refuse to edit a file we cannot read
    return json.loads((directory / ACCESS_LIST).read_bytes())["keys"]


def init_keys(directory: str | os.PathLike[str]) -> Path:
    """Create the server keypair and an empty access list in `directory` (mode 0700)."""
    import zmq.auth

    path = Path(directory)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (path / SERVER_SECRET).exists() or (path / ACCESS_LIST).exists():
        raise KeyFileError(f"{path} already holds server keys: use another directory")
    old = os.umask(0o077)  # both files are born private; the public one is opened up below
    try:
        public_file, secret_file = zmq.auth.create_certificates(path, "server")
    finally:
        os.umask(old)
    os.chmod(secret_file, 0o600)
    os.chmod(public_file, 0o644)
    with _locked(path):
        _write_access(path, [])
    return path


def add_key(
    directory: str | os.PathLike[str],
    name: str,
    role: str,
    scope: str | None = None,
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Make a client keypair, write its credential file (0600) and list its public key."""
    path = Path(directory)
    if not _NAME.match(name):
        raise KeyFileError(f"key name {name!r}: use letters, digits, '_', '.', '-' (max 64)")
    if role not in ROLES:
        raise KeyFileError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if scope is not None:
        parse_scope(scope)
    server_public, _ = load_server_keys(path)
    target = Path(out) if out is not None else Path(f"{name}.pyzdb-key")
    with _locked(path):
        entries = _raw_entries(path)
        if any(entry.get("name") == name for entry in entries):
            raise KeyFileError(f"a key named {name!r} exists: revoke it first")
        public, secret = zmq.curve_keypair()
        _write_credential(target, name, role, scope, public, secret, server_public)
        entries.append(
            {
                "name": name,
                "public": public.decode("ascii"),
                "role": role,
                "scope": scope,
                "added": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        _write_access(path, entries)
    return target


def _write_credential(
    target: Path,
    name: str,
    role: str,
    scope: str | None,
    public: bytes,
    secret: bytes,
    server: bytes,
) -> None:
    """The client's file, in zmq's certificate format plus `server-key`; never overwritten."""
    text = (
        f"#   pyzdb credential for {name} (role {role}"
        f"{', scope ' + scope if scope else ''}).\n"
        "#   Keep it secret: it is the only copy of this client's secret key.\n"
        f'metadata\n    name = "{name}"\ncurve\n'
        f'    public-key = "{public.decode()}"\n'
        f'    secret-key = "{secret.decode()}"\n'
        f'    server-key = "{server.decode()}"\n'
    )
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{target} exists: choose another --out") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def revoke_key(directory: str | os.PathLike[str], name: str) -> None:
    """Take `name` off the access list; a running server refuses it from its next message."""
    path = Path(directory)
    with _locked(path):
        entries = _raw_entries(path)
        kept = [entry for entry in entries if entry.get("name") != name]
        if len(kept) == len(entries):
            raise KeyFileError(f"no key named {name!r} in {path / ACCESS_LIST}")
        _write_access(path, kept)


__all__ = [
    "AccessEntry",
    "Credential",
    "KeyFileError",
    "ROLES",
    "add_key",
    "init_keys",
    "load_access",
    "load_credential",
    "load_server_keys",
    "parse_scope",
    "revoke_key",
    "scope_text",
]
