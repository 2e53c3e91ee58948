"""`pyzdb-server --keys DIR`: CURVE on the socket, ZAP against the access list, a role per op.

Theory of operation
-------------------
- The ROUTER socket is a CURVE server with the secret key of `DIR/server.key_secret`, and a
  ZAP domain that libzmq enforces (`ZAP_ENFORCE_DOMAIN`): every handshake is put to pyzmq's
  `ThreadAuthenticator` (RFC 27, on `inproc://zeromq.zap.01`), which asks `callback` whether
  the client's public key is on the access list. A refused handshake never reaches the loop.
- Every message then carries the ZAP `User-Id` (the key's Z85 public key), which `drain` reads
  from the frame. `admit` looks the key up in the *current* list for each message, so a key
  revoked since its handshake is refused from its next message (AuthenticationError), then
  checks the op against the key's role (SecurityError naming the role it needs).
- The list is re-read when its file changes (one `stat` per turn of the loop, ~1 us) and on
  SIGHUP. A reload that fails leaves an *empty* list, so the server refuses every key and logs
  why until a good list is back: it never keeps trusting a key it can no longer read.
- Session ids are bound to the key: `admit` replaces the client's session with a hash of it
  and the key's public key, so the reply cache, the lock holder and the lock queue, which are
  keyed by session, cannot be reached by another key that guesses or replays a session id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from pyzdb.errors import AuthenticationError, SecurityError
from pyzdb.net.keys import ACCESS_LIST, AccessEntry, KeyFileError, load_access, load_server_keys
from pyzdb.net.messages import Request
from pyzdb.sandbox import Budget

log = logging.getLogger("pyzdb.auth")

#: The ZAP domain of pyzdb's socket (RFC 27): the authenticator answers for it alone.
ZAP_DOMAIN = "pyzdb"
#: The least role each op needs. An op missing here (a newer client, another branch's op)
#: needs `admin`: deny by default. `info` and `watch` are read ops (README, Roles).
OP_ROLES: dict[str, str] = {
    "query": "read",
    "history": "read",
    "blob": "read",
    "ping": "read",
    "info": "read",
    "watch": "read",
    "execute": "write",
    "undo": "write",
    "redo": "write",
    "lock": "write",
    "begin": "write",
    "unlock": "write",
    "commit": "write",
    "rollback": "write",
    "checkpoint": "admin",
    "replicate": "admin",
    "snapshot": "admin",
}
_LEVEL = {"read": 0, "write": 1, "admin": 2}
#: Refused handshakes logged per second; the rest are counted.
REFUSALS_LOGGED = 10
_SIGNALS_FOR_MAIN = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGHUP}
#: pyzmq's flags as plain ints: its enum flags cost an `enum` call per use on the hot path.
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)


@dataclasses.dataclass(frozen=True)
class Grant:
    """What one authenticated key may do: its entry, and its budget if it is scoped."""

    entry: AccessEntry
    budget: Budget | None = None
    #: What a session id is hashed with to bind it to this key.
    salt: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "salt", self.entry.public.encode() + b"\0")

    @property
    def scope(self) -> tuple[Any, ...] | None:
        return self.entry.scope

    @property
    def tag(self) -> str:
        """The prefix of this key's units in the history: `[key NAME] ` is no valid Python
        source, so no unlabelled unit can pass for a key's own."""
        return f"[key {self.entry.name}] "


class Delivery(list[bytes]):
    """The frames of one message, with the `User-Id` ZAP gave its connection."""

    __slots__ = ("user",)

    def __init__(self, frames: list[bytes], user: str) -> None:
        super().__init__(frames)
        self.user = user


class ServerAuth:
    """The access list of one keys directory, kept current, and the ZAP handler over it."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        context: zmq.Context,
        scoped_budget: Budget | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._public, self._secret = load_server_keys(self.directory)
        self._scoped_budget = scoped_budget
        self._grants: dict[str, Grant] = {}
        self._signature: tuple[int, int, int] | None = None
        self._reload_asked = False
        self._refusal_window = 0.0  # the authenticator thread's log throttle (`callback`)
        self._refusals = self._refusals_dropped = 0
        entries, problems = load_access(self.directory)  # at start a bad list is fatal
        self._install(entries, problems)
        self._access_path = str(self.directory / ACCESS_LIST)  # stat on every turn: no pathlib
        self._signature = self._stat()
        # The authenticator's thread must not take the signals the main thread waits for.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS_FOR_MAIN)
        try:
            self._authenticator = ThreadAuthenticator(context, log=log)
            self._authenticator.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self._authenticator.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=self)
        log.info("CURVE on: %d keys on the access list of %s", len(self._grants), self.directory)

    @staticmethod
    def check(directory: str | os.PathLike[str]) -> None:
        """Raise KeyFileError unless `directory` holds usable server keys and access list."""
        load_server_keys(directory)
        load_access(directory)

    @property
    def keys(self) -> int:
        return len(self._grants)

    def configure(self, socket: zmq.Socket) -> None:
        """Make `socket` a CURVE server whose every handshake goes through ZAP (before bind)."""
        socket.curve_server = True
        socket.curve_secretkey = self._secret
        socket.zap_domain = ZAP_DOMAIN.encode()
        socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP's question, in the authenticator's thread: is this public key (Z85) listed?

        Refusals are logged at most `REFUSALS_LOGGED` times a second (then counted), so a
        stranger retrying handshakes cannot fill the disk through the log.
        """
        allowed = key.decode("ascii", "replace") in self._grants
        if not allowed:
            now = time.monotonic()
            if now - self._refusal_window >= 1.0:
                if self._refusals_dropped:
                    log.warning(
                        "... and %d more refused handshakes in the last second",
                        self._refusals_dropped,
                    )
                self._refusal_window, self._refusals, self._refusals_dropped = now, 0, 0
            if self._refusals < REFUSALS_LOGGED:
                self._refusals += 1
                log.warning(
                    "refused a CURVE handshake: key %s is not on the access list",
                    key.decode("ascii", "replace"),
                )
            else:
                self._refusals_dropped += 1
        return allowed

    # -- the list ------------------------------------------------------------------------------

    def ask_reload(self) -> None:
        """SIGHUP: re-read the list at the next turn even if its file looks unchanged."""
        self._reload_asked = True

    def refresh(self) -> None:
        """Re-read the list if its file changed or a reload was asked (each turn of the loop)."""
        signature = self._stat()
        if signature == self._signature and not self._reload_asked:
            return
        self._reload_asked = False
        self._signature = signature
        try:
            entries, problems = load_access(self.directory)
        except KeyFileError as exc:
            log.error(
                "reloading the access list failed, so every key is refused until it is fixed: %s",
                exc,
            )
            self._grants = {}
            return
        self._install(entries, problems)
        log.info("access list reloaded: %d keys", len(self._grants))

    def _install(self, entries: dict[str, AccessEntry], problems: list[str]) -> None:
        for problem in problems:
            log.error(
                "access list %s: %s (that key is refused)", self.directory / ACCESS_LIST, problem
            )
        self._grants = {
            public: Grant(entry, self._scoped_budget if entry.scope is not None else None)
            for public, entry in entries.items()
        }

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self._access_path)
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size

    # -- messages ------------------------------------------------------------------------------

    def drain(self, socket: zmq.Socket, ready: bool, limit: int) -> list[list[bytes]]:
        """`Router.drain` for a CURVE socket: each message with the User-Id of its sender.

        Only the first frame is received as a `zmq.Frame` (for its metadata), the rest as
        bytes: `recv_multipart(copy=False)` measured 5-35 us per message here, this ~2 us.
        """
        batch: list[list[bytes]] = []
        recv, getsockopt = socket.recv, socket.getsockopt
        # ignore: EVENTS is an int option; pyzmq's stub types every option int | bytes
        while len(batch) < limit and (ready or getsockopt(_EVENTS) & _POLLIN):  # type: ignore[operator]
            ready = False
            try:
                first = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                break
            frames = [first.bytes, recv(_NOBLOCK)]
            while getsockopt(_RCVMORE):
                frames.append(recv(_NOBLOCK))
            # ignore: "User-Id" is a str property; pyzmq's stub types every property int | str
            batch.append(Delivery(frames, first.get("User-Id")))  # type: ignore[arg-type]
        return batch

    def admit(self, frames: list[bytes], request: Request) -> tuple[Request, Grant]:
        """The request bound to its key, and the key's grant; raises if the key may not send it.

        AuthenticationError: the key was revoked since its handshake. SecurityError: the op
        needs a higher role. Either way nothing has run.
        """
        grant = self._grants.get(getattr(frames, "user", ""))
        if grant is None:
            raise AuthenticationError(
                "this connection's key is no longer on the server's access list (revoked)"
            )
        needs = OP_ROLES.get(request.op, "admin")
        if _LEVEL[grant.entry.role] < _LEVEL[needs]:
            raise SecurityError(
                f"the {request.op} request needs the {needs} role; the key "
                f"{grant.entry.name!r} has the {grant.entry.role} role"
            )
        if request.session:
            bound = hashlib.blake2b(grant.salt + request.session, digest_size=32).digest()
            # The request was decoded from this message alone and nothing else refers to it
            # yet: set the field in place. Building a new (frozen) Request would validate it all
            # again, 6 us on every keyed message.
            object.__setattr__(request, "session", bound)
        return request, grant

    def close(self) -> None:
        self._authenticator.stop()


__all__ = ["Delivery", "Grant", "OP_ROLES", "ServerAuth", "ZAP_DOMAIN"]
