"""Helpers for tests of `pyzdb-server --keys`: a keys directory with one key per role and scope,
and a real server (real CURVE, real ZAP) to start on it.

`Keyring(tmp_path)` runs `pyzdb-keys init` and `add` (the functions behind the console
script) for: `admin`, `writer`, `reader` (unscoped), `acme` and `globex` (write, scoped to
`db['tenants']['acme']` / `['globex']`) and `acme-reader` (read, scoped to acme). Each
credential file is `keyring.key(name)`.
"""

from __future__ import annotations

from pathlib import Path

from server_process import ServerProcess

from pyzdb.api.proxy import DatabaseAPI
from pyzdb.net import keys

ROLES = {"admin": "admin", "writer": "write", "reader": "read"}
SCOPED = {
    "acme": ("write", "db['tenants']['acme']"),
    "globex": ("write", "db['tenants']['globex']"),
    "acme-reader": ("read", "db['tenants']['acme']"),
}


class Keyring:
    """A keys directory plus the credential files handed to its clients."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "keys"
        self.out = root / "credentials"
        self.out.mkdir(parents=True)
        keys.init_keys(self.dir)
        for name, role in ROLES.items():
            self.add(name, role)
        for name, (role, scope) in SCOPED.items():
            self.add(name, role, scope)

    def add(self, name: str, role: str, scope: str | None = None) -> Path:
        return keys.add_key(self.dir, name, role, scope, self.out / f"{name}.pyzdb-key")

    def key(self, name: str) -> str:
        return str(self.out / f"{name}.pyzdb-key")

    def server(self, data_dir: Path, *args: str, tcp: bool = False) -> ServerProcess:
        """A server with `--keys` on this directory, pinged with the admin key; not started
        yet: `with keyring.server(data_dir) as server:` starts it and checks its exit."""
        return ServerProcess(
            data_dir, "--keys", str(self.dir), *args, tcp=tcp, key=self.key("admin")
        )


def seed_tenants(db: DatabaseAPI) -> None:
    """Two tenants and some global data, written with an unscoped key."""
    db.execute(
        "db['tenants'] = {'acme': {'orders': [1, 2, 3], 'name': 'ACME'},"
        " 'globex': {'orders': [7], 'secret': 'globex-secret-4711'}}\n"
        "db['config'] = {'admin-password': 'global-secret-0815'}"
    )


__all__ = ["Keyring", "seed_tenants", "ROLES", "SCOPED"]
