"""Round two, class 7a: journal failures must stop writes, not the server.

Injected for real: the serving worker gets a file-size limit (RLIMIT_FSIZE, set from outside
with prlimit) just above its journal, so the next large append fails with EFBIG, as a full
disk (ENOSPC) or a failing one (EIO) would fail it. Each case runs after that.
"""

CASES = [
    {
        "name": "failed-append",
        "why": "the write whose record cannot be appended",
        "source": "db['big'] = 'z' * 5000",
    },
    {
        "name": "failed-append-in-place",
        "why": "an in-place change of a stored list",
        "source": "db['l'].extend([str(i) * 100 for i in range(50)])",
    },
]
