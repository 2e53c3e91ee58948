"""A real `pyzdb-server` in its own process, for tests.

`ServerProcess(data_dir, *args).start()` runs `server_main(["--data", data_dir, "--bind", uri,
*args])` in a new process listening on `ipc://` in a fresh short temp dir (or on a free
127.0.0.1 port with `tcp=True`), counts it as started once it answers a ping, and always cleans
up: SIGTERM, then SIGKILL if it has not exited within 10 s. Its log goes to a file, never to a
pipe nobody reads (a full pipe would block the server); `log()` returns it for messages.

The one way tests hold a server is `with ServerProcess(...) as server:` (in a fixture: the
same, with `yield server` inside). Leaving the block stops the server and fails the test unless
it exited with status 0, what `pyzdb-server` returns after a clean stop on SIGTERM (1 or 2 mean
it failed or refused to start, a negative status that a signal ended it): a server that crashed
or hung under a test is a bug even when the test's own asserts passed. A server the test killed
on purpose (`kill()`, the crash the journal is built for) and did not start again is only
cleaned up.

`open_database(kind, data_dir, ...)` does the same for a test that runs against either kind of
database: `pyzdb.open` in this process, or `pyzdb.connect` to such a server.

Two ways to start it:

- `script=True`: the `pyzdb-server` console script, exactly what an operator runs (~0.3 s of
  interpreter start and imports).
- default: forked from a *zygote*, a single-threaded helper process (this file run as a script)
  that imported `pyzdb.server` once. The child runs the same `server_main` with the same
  arguments in a fresh process, in ~20 ms, which is what lets every behaviour test of the
  `db` fixture also run against a live server. The zygote reaps its children and reports their
  exit status; it kills any still running when the test process goes away (its stdin closes).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import zmq

import pyzdb
from pyzdb.codec import MAX_REPLY_SIZE
from pyzdb.net.keys import load_credential
from pyzdb.net.messages import Request, decode_reply, pack

#: The console script installed beside this interpreter (`pip install -e .`).
SERVER_SCRIPT = Path(sys.executable).with_name("pyzdb-server")


def free_tcp_uri() -> str:
    """A 127.0.0.1 port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def ping(uri: str, timeout: float, key: str | os.PathLike[str] | None = None) -> bool:
    """True if a pyzdb server at `uri` answers a ping within `timeout` seconds (with `key`, a
    credential file, for a server started with `--keys`)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if key is not None:
        credential = load_credential(key)
        sock.curve_publickey = credential.public
        sock.curve_secretkey = credential.secret
        sock.curve_serverkey = credential.server
    sock.setsockopt(zmq.RECONNECT_IVL, 5)  # the server may bind a moment after we connect
    try:
        sock.connect(uri)
        sock.send_multipart([b"", pack(Request(1, "ping"))])
        if not sock.poll(timeout * 1000):
            return False
        frames = sock.recv_multipart()
        return decode_reply(frames[-1], MAX_REPLY_SIZE).ok
    finally:
        sock.close()


class ServerProcess:
    """One server on `data_dir`; `uri` is where it listens (the same across restarts)."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *args: str,
        tcp: bool = False,
        script: bool = False,
        key: str | os.PathLike[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.key = key  # the credential the start-up ping uses (`--keys` servers)
        self.args = list(args)
        self.script = script
        # ipc paths are limited to ~100 bytes: pytest's tmp_path can be longer.
        self.scratch = Path(tempfile.mkdtemp(prefix="pyzdb-"))
        self.uri = free_tcp_uri() if tcp else f"ipc://{self.scratch}/server.sock"
        self.log_path = self.scratch / "server.log"
        self.process: subprocess.Popen[bytes] | _Forked | None = None
        #: Whether the test SIGKILLed the server it last started (its exit is then no failure).
        self.killed = False

    @property
    def argv(self) -> list[str]:
        return ["--data", str(self.data_dir), "--bind", self.uri, *self.args]

    def start(self, timeout: float = 20.0) -> ServerProcess:
        """Start the server and wait until it answers a ping (its log is in the error)."""
        self.killed = False
        if self.script:
            if not SERVER_SCRIPT.exists():
                raise RuntimeError(f"{SERVER_SCRIPT} is missing: run `pip install -e .` first")
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [str(SERVER_SCRIPT), *self.argv],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
        else:
            self.process = _Zygote.get().fork(self.argv, self.log_path)
        deadline = time.monotonic() + timeout
        while not ping(self.uri, 0.1, self.key):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"pyzdb-server exited with {self.process.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self._sigkill()
                raise RuntimeError(f"pyzdb-server did not answer within {timeout} s:\n{self.log()}")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def worker_pid(self) -> int:
        """The process that serves: the supervisor's newest worker (from the log), or `pid`
        itself for a server started with `--no-supervisor` (with `--front`, the shadow's
        workers are logged too, tagged "[shadow]": not these)."""
        found = re.findall(r"^(?!.*\[shadow\]).*worker pid (\d+) serves", self.log(), re.M)
        return int(found[-1]) if found else self.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._sigkill()
        assert self.process.returncode is not None
        return self.process.returncode

    def stop_cleanly(self) -> None:
        """Stop it and fail unless it exited 0 (a clean stop on SIGTERM), unless the test
        killed it on purpose and did not start it again."""
        if self.killed:
            return
        status = self.stop()
        assert status == 0, f"pyzdb-server exited with {status}:\n{self.log()}"

    def kill(self) -> None:
        """SIGKILL: the crash the journal is built for (the test's own doing, so the exit
        status is not checked until the server is started again)."""
        self.killed = True
        self._sigkill()

    def _sigkill(self) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> ServerProcess:
        """Start again on the same data directory and URI (after `stop()` or `kill()`)."""
        return self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        """Stop the server if it runs, and remove the scratch dir (socket, log)."""
        try:
            if self.alive():
                self.stop()
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, error_type: type[BaseException] | None, *exc_info: object) -> None:
        """Stop it; when the block ended without an error, fail unless it exited cleanly (an
        error already fails the test, and stays the one it reports)."""
        try:
            if error_type is None:
                self.stop_cleanly()
        finally:
            self.close()


@contextlib.contextmanager
def open_database(
    kind: str,
    data_dir: str | os.PathLike[str],
    *server_args: str,
    timeout: float | None = None,
    **open_options: Any,
) -> Iterator[tuple[pyzdb.Database, ServerProcess | None]]:
    """(database, server) of `kind` on `data_dir`, closed at the end.

    "embedded": `pyzdb.open(data_dir, **open_options)` and no server; "remote": `pyzdb.connect`
    (with `timeout`, if given) to a `ServerProcess(data_dir, *server_args)`, whose clean exit
    is checked. The caller states each limit both ways (`retain_journal=3` and
    `"--retain-journal", "3"`).
    """
    if kind == "embedded":
        database = pyzdb.open(data_dir, **open_options)
        try:
            yield database, None
        finally:
            database.close()
        return
    with ServerProcess(data_dir, *server_args) as server:
        options = {} if timeout is None else {"timeout": timeout}
        database = pyzdb.connect(server.uri, **options)
        try:
            yield database, server
        finally:
            database.close()


# -- the zygote ----------------------------------------------------------------------------------


class _Zygote:
    """The test side of the zygote: one JSON line per command, one JSON line per answer."""

    _instance: _Zygote | None = None
    _create = threading.Lock()

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self._mutex = threading.Lock()

    @classmethod
    def get(cls) -> _Zygote:
        with cls._create:
            if cls._instance is None or cls._instance.process.poll() is not None:
                cls._instance = cls()
            return cls._instance

    def ask(self, **command: object) -> dict[str, object]:
        assert self.process.stdin is not None and self.process.stdout is not None
        with self._mutex:
            self.process.stdin.write(json.dumps(command).encode() + b"\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the server zygote died (status {self.process.poll()})")
        return json.loads(line)

    def fork(self, argv: list[str], log: Path) -> _Forked:
        return _Forked(self, int(self.ask(op="fork", argv=argv, log=str(log))["pid"]))


class _Forked:
    """A server the zygote forked, with the part of `Popen`'s interface `ServerProcess` uses."""

    def __init__(self, zygote: _Zygote, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def wait(self, timeout: float) -> int:
        if self.returncode is None:
            self.returncode = self.zygote.ask(op="wait", pid=self.pid, timeout=timeout)["status"]
            if self.returncode is None:
                raise subprocess.TimeoutExpired(f"pyzdb-server {self.pid}", timeout)
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _zygote_main() -> None:
    """Fork servers on request; reap them; kill the survivors when stdin closes."""
    from pyzdb.server import server_main

    children: dict[int, int | None] = {}
    try:
        while line := sys.stdin.readline():
            command = json.loads(line)
            if command["op"] == "fork":
                pid = os.fork()
                if pid == 0:
                    _child(server_main, command["argv"], command["log"])
                children[pid] = None
                answer: dict[str, object] = {"pid": pid}
            else:
                pid = command["pid"]
                deadline = time.monotonic() + command["timeout"]
                while children[pid] is None:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        children[pid] = os.waitstatus_to_exitcode(status)
                    elif time.monotonic() >= deadline:
                        break
                    else:
                        time.sleep(0.002)
                answer = {"status": children[pid]}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        for pid, status in children.items():
            if status is None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _child(server_main: Callable[[list[str]], int], argv: list[str], log: str) -> None:
    """In the forked child: detach from the zygote's pipes, log to a file, serve, exit."""
    status = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        status = server_main(argv)
    except SystemExit as exc:  # argparse refusing the arguments
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


if __name__ == "__main__":
    _zygote_main()
