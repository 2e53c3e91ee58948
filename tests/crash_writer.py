"""Child process of the SIGKILL test in test_journal.py: append numbered records until killed.

Usage: `python crash_writer.py DIRECTORY CHECKPOINT_EVERY`

Recovers DIRECTORY, prints `ready <last seq>`, then appends `("n", seq, padding)` with fsync
policy `always` forever, printing each seq only once `append` has returned: a printed seq is
an acknowledged write. Every CHECKPOINT_EVERY records it takes a checkpoint whose payload is
the list of every seq so far, so a kill also lands inside checkpoints and segment switches.
"""

from __future__ import annotations

import sys

from pyzdb.storage.journal import Journal


def record(seq: int) -> tuple[str, int, str]:
    """The record written under `seq`; the padding varies the frame sizes."""
    return ("n", seq, "x" * (seq % 37))


def main() -> None:
    directory, every = sys.argv[1], int(sys.argv[2])
    journal = Journal(directory, fsync="always")
    payload, records = journal.recover()
    seqs = list(payload or [])
    seqs.extend(item[1] for _, item in records)
    print("ready", journal.last_seq, flush=True)
    while True:
        seq = journal.append(record(journal.last_seq + 1))
        seqs.append(seq)
        print(seq, flush=True)
        if seq % every == 0:
            journal.checkpoint(seqs)


if __name__ == "__main__":
    main()
