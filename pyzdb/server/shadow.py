"""The front's shadow: a read-only replica of the worker, for the reads a stuck worker holds up.

Why a replica and not a second look at the worker's memory: the worker is the process that is
stuck (a C call holds its GIL) or dead, so whatever answers meanwhile must hold its own copy of
the data. `pyzdb-server --replica-of` already is such a copy: it follows the worker's journal
(the records a reply may reflect, once durable), answers a read that carries a `min_seq` only
once it has applied that seq (read-your-writes), and refuses every write. The front sends it
reads with `min_seq` raised to the newest seq any reply acknowledged, so a client never reads
an older state than one it was told about; a shadow that lags makes the read wait (at most the
client's own wait, then a clear error), never answer from the past.

The shadow is a whole `pyzdb-server` (its own supervisor, so a read that sticks the shadow in C
is killed and quarantined there too) started by the front with `--shadow-for PID`: behind the
front (the front's routing frame), tied to the front's life (`PR_SET_PDEATHSIG`, checked after
exec), logging with a ``[shadow]`` tag. Its data directory is `SHADOW_DIR` inside the worker's,
so a restart resumes from its own journal instead of a full snapshot; its journal is not
fsynced (`--fsync no`: it is a copy, rebuilt from the worker when in doubt). It costs a second
copy of the database in memory, and disk for its journal and checkpoints.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

from pyzdb.server.options import ServerConfig

log = logging.getLogger("pyzdb.front")

#: The shadow's data directory, inside the worker's.
SHADOW_DIR = "front-shadow"
#: Seconds before a shadow that exited is started again, doubling up to `MAX_PAUSE`.
FIRST_PAUSE = 1.0
MAX_PAUSE = 30.0
#: Seconds the shadow gets to stop on SIGTERM before it is killed.
STOP_WAIT = 10.0
_MAIN = "import sys; from pyzdb.server.main import server_main; sys.exit(server_main())"


class Shadow:
    """The shadow's process: started, watched and restarted by the front."""

    def __init__(
        self, config: ServerConfig, primary: str, uri: str, grace: float, verbose: bool
    ) -> None:
        self.uri = uri
        self.data = os.path.join(config.data, SHADOW_DIR)
        self.argv = [
            sys.executable,
            "-c",
            _MAIN,
            "--data",
            self.data,
            "--bind",
            uri,
            "--replica-of",
            primary,
            "--shadow-for",
            str(os.getpid()),
            "--fsync",
            "no",
            "--max-message",
            str(config.max_message),
            "--kill-grace",
            str(grace),
        ]
        if config.time_limit is not None:
            self.argv += ["--time-limit", str(config.time_limit)]
        if config.max_memory is not None:
            self.argv += ["--max-memory", str(config.max_memory)]
        if verbose:
            self.argv.append("-v")
        self.process: subprocess.Popen[bytes] | None = None
        self._pause = FIRST_PAUSE
        self._started_at = 0.0
        self._restart_at = 0.0

    def start(self) -> None:
        """Start the shadow (its log goes where the front's goes)."""
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL)
        self._started_at = time.monotonic()
        log.info("shadow pid %d follows the worker", self.process.pid)

    def check(self) -> None:
        """Each tick of the front: start again a shadow that exited, after a pause."""
        process = self.process
        if process is None or process.poll() is None:
            return
        now = time.monotonic()
        if not self._restart_at:
            if now - self._started_at > MAX_PAUSE:  # it served a while: no crash loop
                self._pause = FIRST_PAUSE
            log.error(
                "the shadow exited with status %s: reads wait for the worker until it is "
                "back (in %g s)",
                process.returncode,
                self._pause,
            )
            self._restart_at = now + self._pause
            self._pause = min(MAX_PAUSE, self._pause * 2)
        elif now >= self._restart_at:
            self._restart_at = 0.0
            self.start()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still there after `STOP_WAIT` seconds."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


__all__ = ["SHADOW_DIR", "Shadow"]
