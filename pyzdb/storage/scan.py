"""Reading a data directory's journal files frame by frame, without replaying them.

Recovery's error for a record it cannot apply names the record's file and offset, and
`pyzdb-recover` cuts the journal there: both walk the segments the same way, from here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from pyzdb.errors import Error
from pyzdb.storage.format import LENGTH_CRC, SEGMENT_HEADER, SEQ, list_segments


def frames(path: str) -> Iterator[tuple[int, int]]:
    """(seq, offset) of each whole frame of a segment, up to the first one cut short."""
    with open(path, "rb") as handle:
        data = handle.read()
    pos = SEGMENT_HEADER.size
    head = LENGTH_CRC.size + SEQ.size
    while pos + head <= len(data):
        length, _crc = LENGTH_CRC.unpack_from(data, pos)
        (seq,) = SEQ.unpack_from(data, pos + LENGTH_CRC.size)
        if pos + head + length > len(data):
            return
        yield seq, pos
        pos += head + length


def locate(directory: str, seq: int) -> tuple[str, int] | None:
    """(segment file name, byte offset) of record `seq`, or None if no segment holds it."""
    for first, path in reversed(list_segments(directory)):
        if first <= seq:
            for found, offset in frames(path):
                if found == seq:
                    return os.path.basename(path), offset
            return None
    return None


def unreplayable(directory: str, seq: int, exc: Exception) -> Error:
    """Recovery met a journal record it cannot apply: say which one, where and why.

    Starting with the record left out would silently lose it and every later write that
    depends on it, so the operator decides, with `pyzdb-recover --until SEQ`.
    """
    where = locate(directory, seq)
    place = f" ({where[0]}, offset {where[1]})" if where is not None else ""
    return Error(
        f"cannot recover {directory}: journal record seq {seq}{place} cannot be applied "
        f"({type(exc).__name__}: {exc}); the records before it are intact. To start from "
        f"them, run `pyzdb-recover {directory} --until {seq}` (it copies the directory first)"
    )


__all__ = ["frames", "locate", "unreplayable"]
