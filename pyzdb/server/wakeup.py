"""A pipe that wakes the server's poll from another thread (the sync thread, the fetch thread).

The loop polls the read end with the socket; a thread writes one byte when it has news. Both
ends are non-blocking: a full pipe means a wake-up is already pending, so the write is
dropped, and the loop empties the pipe after each poll that said it is readable.
"""

from __future__ import annotations

import contextlib
import os


class WakePipe:
    """One wake-up channel: `notify` from any thread, `fileno`/`clear` in the loop.

    >>> pipe = WakePipe()
    >>> pipe.notify(); pipe.notify()
    >>> os.read(pipe.fileno(), 16)
    b'\\x00\\x00'
    >>> pipe.clear(); pipe.close()
    """

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)

    def fileno(self) -> int:
        """The end the loop polls: readable after a `notify`."""
        return self._read_fd

    def notify(self) -> None:
        """Wake the loop (any thread)."""
        with contextlib.suppress(BlockingIOError):  # full: the loop has a wake-up pending
            os.write(self._write_fd, b"\0")

    def clear(self) -> None:
        """Empty the pipe (the loop, after the poll said it is readable)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read_fd, 4096):
                pass

    def close(self) -> None:
        os.close(self._read_fd)
        os.close(self._write_fd)


__all__ = ["WakePipe"]
