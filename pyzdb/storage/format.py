"""The journal's on-disk format: file names, headers, frames. One home for these facts.

Files in the data directory::

    LOCK                                  flock'ed by the one process that owns the directory
    journal-<first seq, 20 digits>.log    a segment: header, then frames, appended in place
    checkpoint-<seq, 20 digits>.ckpt      a checkpoint covering every record up to <seq>

A segment starts with `SEGMENT_HEADER` (magic, format version); each record is one frame
`[payload length u32][crc32 of seq+payload u32][seq u64][payload = marshal.dumps(record, 4)]`.
A checkpoint is `CHECKPOINT_HEADER` (magic, version, seq, body length, crc32 of the body)
followed by the body, `marshal.dumps(payload, 4)`. A file being born is written as ``*.tmp``
first (see `pyzdb.storage.files.write_new_file`).

>>> os.path.basename(segment_path("data", 1))
'journal-00000000000000000001.log'
>>> SEGMENT_NAME.fullmatch("journal-00000000000000000001.log").group(1)
'00000000000000000001'
"""

from __future__ import annotations

import os
import re
import struct

__all__ = [
    "CHECKPOINT_HEADER",
    "CHECKPOINT_MAGIC",
    "CHECKPOINT_NAME",
    "FORMAT_VERSION",
    "FRAME",
    "LENGTH_CRC",
    "MARSHAL_VERSION",
    "MAX_PAYLOAD",
    "SEGMENT_HEADER",
    "SEGMENT_MAGIC",
    "SEGMENT_NAME",
    "SEQ",
    "SMALLEST_FRAME",
    "TEMP_NAME",
    "checkpoint_path",
    "list_checkpoints",
    "list_segments",
    "segment_path",
]

#: Bumped when the layout of segments, frames or checkpoints changes.
FORMAT_VERSION = 1

SEGMENT_HEADER = struct.Struct("<8sI")  # magic, format version
SEGMENT_MAGIC = b"PYZDBLOG"
CHECKPOINT_HEADER = struct.Struct("<8sIQQI")  # magic, version, seq, body length, crc32(body)
CHECKPOINT_MAGIC = b"PYZDBCKP"
FRAME = struct.Struct("<IIQ")  # payload length, crc32(seq + payload), seq
LENGTH_CRC = struct.Struct("<II")
SEQ = struct.Struct("<Q")
SMALLEST_FRAME = FRAME.size + 1  # marshal never writes an empty payload
MARSHAL_VERSION = 4
MAX_PAYLOAD = 0xFFFFFFFF
SEGMENT_NAME = re.compile(r"journal-(\d{20})\.log")
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d{20})\.ckpt")
TEMP_NAME = re.compile(r"(journal-\d{20}\.log|checkpoint-\d{20}\.ckpt)\.tmp")


def segment_path(directory: str, first: int) -> str:
    """The path of the segment whose first record is `first`."""
    return os.path.join(directory, f"journal-{first:020d}.log")


def checkpoint_path(directory: str, seq: int) -> str:
    """The path of the checkpoint covering every record up to `seq`."""
    return os.path.join(directory, f"checkpoint-{seq:020d}.ckpt")


def list_segments(directory: str) -> list[tuple[int, str]]:
    """(first seq, path) of every journal segment, in order."""
    return _listing(directory, SEGMENT_NAME)


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
    """(seq, path) of every checkpoint, oldest first."""
    return _listing(directory, CHECKPOINT_NAME)


def _listing(directory: str, pattern: re.Pattern[str]) -> list[tuple[int, str]]:
    found = []
    for name in os.listdir(directory):
        match = pattern.fullmatch(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return sorted(found)
