"""The installed version of pyzdb, for `pyzdb.__version__`, `--version` and `db.info()`.

Read from the package metadata so that `setup.cfg` stays the one place the number is written.
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("pyzdb")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"


def version_line(program: str) -> str:
    """What `PROGRAM --version` prints: the program, pyzdb's version and Python's."""
    import platform

    return f"{program} (pyzdb {__version__}, Python {platform.python_version()})"


__all__ = ["__version__", "version_line"]
