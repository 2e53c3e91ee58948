"""A segment's frames: writing one, decoding a batch, telling a torn tail from corruption.

The frame layout is in `pyzdb.storage.format`; the rules that keep every crash recoverable
(only the last frame of the last segment can be torn) are in `pyzdb.storage.journal`.

>>> import marshal
>>> data = encode_frame(1, marshal.dumps("a")) + encode_frame(2, marshal.dumps([2]))
>>> decode_frames(memoryview(data), 0, 1, 0, "demo")  # (records, next pos, next seq, problem)
([(1, 'a'), (2, [2])], 45, 3, None)
>>> decode_frames(memoryview(data[:-1]), 0, 1, 0, "demo")  # a torn last frame
([(1, 'a')], 19, 2, 'a payload length of 10 runs past the end')
"""

from __future__ import annotations

import marshal
import os
import re
import zlib
from typing import IO

from pyzdb.errors import Error
from pyzdb.storage.files import write_new_file
from pyzdb.storage.format import (
    FORMAT_VERSION,
    FRAME,
    LENGTH_CRC,
    SEGMENT_HEADER,
    SEGMENT_MAGIC,
    SEQ,
    SMALLEST_FRAME,
)

__all__ = [
    "BATCH",
    "check_segment_header",
    "decode_frames",
    "encode_frame",
    "find_valid_frame",
    "new_segment",
]

#: Records decoded per pause of the cyclic GC: large enough to amortise the pause, small
#: enough that replay stays lazy (memory is bounded by one batch, not the journal).
BATCH = 4096


def encode_frame(seq: int, payload: bytes) -> bytes:
    """The frame of record `seq` whose marshalled form is `payload`.

    One buffer, for one write(2): cheaper than writev for the usual small record.
    """
    seq_bytes = SEQ.pack(seq)
    crc = zlib.crc32(payload, zlib.crc32(seq_bytes))
    return LENGTH_CRC.pack(len(payload), crc) + seq_bytes + payload


def new_segment(path: str) -> int:
    """Create the segment `path` complete (header only) and return it open for appending."""
    return write_new_file(path, SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION), b"", True)


def decode_frames(
    view: memoryview, pos: int, expect: int, skip_to: int, path: str
) -> tuple[list[tuple[int, object]], int, int, str | None]:
    """Decode up to `BATCH` frames at `pos`: (records, next pos, next seq, problem or None).

    Frames with seq <= `skip_to` are checked but not unmarshalled. A problem stops the batch
    at the bad frame; the caller decides between a torn tail and corruption. A well-formed
    frame from the future (seq above the one due) is never a torn write: it raises at once.
    One from the past may be stale bytes of a deleted segment exposed past the real end by a
    power loss, so it is a problem like any other.
    """
    # Locals: this loop runs once per record of the journal.
    unpack, crc32, loads, header = FRAME.unpack_from, zlib.crc32, marshal.loads, FRAME.size
    end = len(view)
    records: list[tuple[int, object]] = []
    while pos < end and len(records) < BATCH:
        if end - pos < header:
            return records, pos, expect, f"a partial frame header ({end - pos} bytes)"
        length, crc, seq = unpack(view, pos)
        stop = pos + header + length
        if not length or stop > end:
            return records, pos, expect, f"a payload length of {length} runs past the end"
        if crc32(view[pos + 8 : stop]) != crc:
            return records, pos, expect, "a checksum mismatch"
        if seq > expect:
            raise Error(f"journal gap in {path} at offset {pos}: seq {seq} where {expect} was due")
        if seq < expect:
            return records, pos, expect, f"a stale frame (seq {seq} where {expect} was due)"
        if seq > skip_to:
            try:
                records.append((seq, loads(view[pos + header : stop])))
            except (EOFError, ValueError, TypeError) as exc:
                return records, pos, expect, f"an undecodable payload ({exc})"
        pos = stop
        expect += 1
    return records, pos, expect, None


def find_valid_frame(view: memoryview, bad: int, expect: int) -> int | None:
    """Offset of a valid frame after the bad one at `bad` with seq >= `expect`, if any.

    This is what tells a torn tail (nothing valid after it) from corruption in the middle.
    A later frame's seq lies in [expect, expect + frames that fit], so a regex finds the
    candidate seq fields in C and only those are checked in Python.
    """
    end = len(view)
    highest = expect + (end - bad) // SMALLEST_FRAME
    for match in _seq_field_pattern(expect, highest).finditer(view, bad + 9):
        pos = match.start() - 8
        length, crc = LENGTH_CRC.unpack_from(view, pos)
        stop = pos + FRAME.size + length
        if length and stop <= end and zlib.crc32(view[pos + 8 : stop]) == crc:
            return pos
    return None


def _seq_field_pattern(low: int, high: int) -> re.Pattern[bytes]:
    """A regex whose zero-width matches sit where 8 bytes spell, little-endian, a seq in range.

    The range is split as for a numeric-range regex: each alternative has free low bytes,
    one byte within a class, and fixed high bytes (at most 2 alternatives per byte).
    """
    alternatives = []
    while low <= high:
        free = 0  # low bytes that take any value in this alternative
        while free < 7 and low % 256 ** (free + 1) == 0 and low + 256 ** (free + 1) - 1 <= high:
            free += 1
        unit = 256**free
        digit = low // unit % 256
        count = min((high - low + 1) // unit, 256 - digit)
        fixed = (low // unit // 256).to_bytes(7 - free, "little")
        byte_class = b"[%s-%s]" % (re.escape(bytes([digit])), re.escape(bytes([digit + count - 1])))
        alternatives.append(b"." * free + byte_class + re.escape(fixed))
        low += count * unit
    return re.compile(b"(?=(?:%s))" % b"|".join(alternatives), re.DOTALL)


def check_segment_header(handle: IO[bytes], path: str) -> int:
    """Validate a segment's header and return the file's size."""
    size = os.fstat(handle.fileno()).st_size
    head = os.pread(handle.fileno(), SEGMENT_HEADER.size, 0)
    if len(head) < SEGMENT_HEADER.size or SEGMENT_HEADER.unpack(head)[0] != SEGMENT_MAGIC:
        raise Error(f"{path} is not a pyzdb journal segment (bad header)")
    version = SEGMENT_HEADER.unpack(head)[1]
    if version != FORMAT_VERSION:
        raise Error(f"{path} has format version {version}; this pyzdb reads {FORMAT_VERSION}")
    return size
