"""Durable file operations: whole new files, complete writes, directory fsyncs, the lock.

A new file is born complete (written as ``<path>.tmp``, fsynced, renamed, directory fsynced),
so a crash leaves either no file or the whole file, never a torn one: recovery relies on it
(see `pyzdb.storage.journal`). The engine's blob store uses `fsync_directory` too.
"""

from __future__ import annotations

import fcntl
import os
from typing import Literal, overload

from pyzdb.errors import Error

__all__ = ["fsync_directory", "lock_directory", "write_all", "write_new_file"]


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data`: a short write (disk nearly full, >2 GiB) is finished."""
    written = os.write(fd, data)
    if written < len(data):
        rest = memoryview(data)[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]


@overload
def write_new_file(path: str, header: bytes, body: bytes) -> None: ...
@overload
def write_new_file(path: str, header: bytes, body: bytes, keep_open: Literal[True]) -> int: ...
def write_new_file(path: str, header: bytes, body: bytes, keep_open: bool = False) -> int | None:
    """Create `path` whole: write `<path>.tmp`, fsync, rename, fsync the directory.

    With `keep_open` the descriptor (opened for appending) is returned instead of closed.
    """
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        write_all(fd, header)
        if body:  # a checkpoint body goes out as is, never concatenated: no second copy
            write_all(fd, body)
        os.fsync(fd)
        os.rename(tmp, path)
        fsync_directory(os.path.dirname(path))
    except BaseException:
        os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if keep_open:
        return fd
    os.close(fd)
    return None


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a create/rename/delete in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_directory(directory: str) -> int:
    """Take the directory's exclusive flock, or say which process holds it."""
    fd = os.open(os.path.join(directory, "LOCK"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise Error(
            f"data directory {directory} is in use by another process (pid {holder})"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
