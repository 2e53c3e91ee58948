"""The client processes of `pyzdb-bench`: the requests each test makes, and the pool that runs them.

Theory of operation
-------------------
The clients are separate *processes* (multiprocessing, `spawn`): client threads of one
interpreter would take turns at its GIL and measure that instead of the server. Each client
process connects once and then serves the parent over a pipe, one test at a time:

1. warm up (connect, fill the server's compile cache, page in the code) outside the clock;
2. wait at a barrier shared by all clients, so they start together;
3. time each of its share of the requests (`perf_counter`), plus its first start and last end.

Latency percentiles come from every request of every client (nearest rank). Throughput is
all requests over the span from the first client's start to the last client's end;
`time.monotonic` is `CLOCK_MONOTONIC` on Linux, one clock for all processes of the machine.
While a test runs, a progress line on stderr counts its requests.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from pyzdb.cli import ycsb
from pyzdb.cli.figures import percentile

COMPREHENSION = "[v*v for v in db['l'] if v % 2]"


def _get(db: Any) -> None:
    db["x"].get()


def _set(db: Any) -> None:
    db["x"] = 1


def _incr(db: Any) -> None:
    db.execute("db['c'] += 1")


def _comprehension(db: Any) -> None:
    db.query(COMPREHENSION)


#: The requests of each test, as the README spells them (module level: a spawned client looks
#: them up by name).
TESTS: dict[str, Callable[[Any], None]] = {
    "get": _get,
    "set": _set,
    "incr": _incr,
    "comprehension": _comprehension,
}
#: Every operation a client process can run: the tests and the YCSB workloads.
_OPS: dict[str, Callable[[Any], None]] = {
    **TESTS,
    **{f"ycsb-{name}": ycsb.operation for name in ycsb.MIXES},
}
#: Requests between two updates of the shared progress counter.
_PROGRESS_EVERY = 64


@dataclass
class Result:
    """Every request of one test: sorted latencies (seconds) and the span they covered."""

    test: str
    clients: int
    latencies: list[float]
    seconds: float

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        """Requests per second over the whole run, all clients together."""
        return self.requests / self.seconds if self.seconds > 0 else float("inf")

    def latency(self, q: float) -> float:
        return percentile(self.latencies, q)

    def row(self) -> list[Any]:
        """The row of the `pyzdb-bench` table: latencies in milliseconds."""
        return [
            self.test,
            self.clients,
            self.requests,
            *(self.latency(q) * 1000 for q in (50, 95, 99, 100)),
            self.throughput,
        ]


HEADERS = ["test", "clients", "requests", "p50 ms", "p95 ms", "p99 ms", "max ms", "req/s"]


class BenchError(Exception):
    """A client could not connect or a request failed: the figures would mean nothing."""


def _client_main(uri: str, timeout: float, barrier: Any, pipe: Connection, progress: Any) -> None:
    """One client process: connect, then run each test the parent names until told to stop."""
    import pyzdb

    try:
        db = pyzdb.connect(uri, timeout=timeout)
        db.query("1")  # reach the server now: a dead URI fails before any test
    except Exception as exc:
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    pipe.send(("ready",))
    try:
        while (command := pipe.recv())[0] == "run":
            _, test, requests, warmup, params = command
            if params:
                ycsb.configure(params)
            pipe.send(_run_share(db, _OPS[test], requests, warmup, barrier, progress))
    except EOFError:  # the parent went away
        pass
    finally:
        db.close()


def _run_share(
    db: Any, op: Callable[[Any], None], requests: int, warmup: int, barrier: Any, progress: Any
) -> tuple[Any, ...]:
    try:
        for _ in range(warmup):
            op(db)
    except Exception as exc:
        barrier.abort()
        return ("error", f"{type(exc).__name__}: {exc}")
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        return ("error", "another client failed while warming up")
    clock = time.perf_counter
    latencies = array("d")
    started = time.monotonic()
    try:
        for index in range(1, requests + 1):
            before = clock()
            op(db)
            latencies.append(clock() - before)
            if not index % _PROGRESS_EVERY:
                with progress.get_lock():
                    progress.value += _PROGRESS_EVERY
    except Exception as exc:
        return ("error", f"{type(exc).__name__}: {exc}")
    return ("ok", started, time.monotonic(), latencies.tobytes())


class ClientPool:
    """`clients` connected client processes that run tests together on request."""

    def __init__(self, uri: str, clients: int, timeout: float = 10.0) -> None:
        if clients < 1:
            raise ValueError("at least one client is needed")
        context = multiprocessing.get_context("spawn")
        self.uri = uri
        self.clients = clients
        self._barrier = context.Barrier(clients)
        self._progress = context.Value("q", 0)
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        try:
            for _ in range(clients):
                mine, theirs = context.Pipe()
                process = context.Process(
                    target=_client_main,
                    daemon=True,
                    args=(uri, timeout, self._barrier, theirs, self._progress),
                )
                process.start()
                theirs.close()
                self._pipes.append(mine)
                self._processes.append(process)
            self._collect("connecting")
        except BaseException:
            self.close()
            raise

    def run(
        self,
        test: str,
        requests: int,
        warmup: int | None = None,
        params: dict[str, Any] | None = None,
        show: bool = False,
    ) -> Result:
        """Run `requests` requests of `test`, split evenly over the clients.

        `params` configures a YCSB workload in each client (`ycsb.configure`); `show` prints a
        progress line on stderr while the clients work.
        """
        if test not in _OPS:
            raise ValueError(f"unknown test {test!r}: choose from {', '.join(_OPS)}")
        with self._progress.get_lock():
            self._progress.value = 0
        shares = [
            requests // self.clients + (i < requests % self.clients) for i in range(self.clients)
        ]
        for pipe, share in zip(self._pipes, shares, strict=True):
            ahead = max(1, min(50, share // 10)) if warmup is None else warmup
            pipe.send(("run", test, share, ahead, params))
        replies = self._collect(test, requests if show else None)
        latencies: list[float] = []
        for reply in replies:
            latencies.extend(array("d", reply[3]))
        latencies.sort()
        span = max(reply[2] for reply in replies) - min(reply[1] for reply in replies)
        return Result(test, self.clients, latencies, span)

    def _collect(self, what: str, total: int | None = None) -> list[tuple[Any, ...]]:
        if total is not None:
            show_progress(what, self._pipes, self._progress, total)
        replies = []
        for pipe in self._pipes:
            try:
                replies.append(pipe.recv())
            except EOFError:
                replies.append(("error", "a client process died"))
        errors = sorted({reply[1] for reply in replies if reply[0] == "error"})
        if errors:
            raise BenchError(f"{what} against {self.uri} failed: {'; '.join(errors)}")
        return replies

    def close(self) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(("stop",))
            except OSError:
                pass
            pipe.close()
        for process in self._processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def show_progress(what: str, pipes: list[Connection], progress: Any, total: int) -> None:
    """Until every client has answered: rewrite one stderr line with the requests done."""
    from multiprocessing.connection import wait

    started = time.monotonic()
    pending = list(pipes)
    while pending:
        ready = wait(pending, timeout=0.5)
        pending = [pipe for pipe in pending if pipe not in ready]
        progress_line(
            f"{what}: {min(progress.value, total):,}/{total:,} requests, "
            f"{time.monotonic() - started:.0f} s"
        )
    progress_line("")


def progress_line(text: str) -> None:
    sys.stderr.write(f"\r{text:<72}\r" if text else "\r" + " " * 72 + "\r")
    sys.stderr.flush()


__all__ = [
    "ClientPool",
    "Result",
    "BenchError",
    "TESTS",
    "HEADERS",
    "COMPREHENSION",
    "progress_line",
]
