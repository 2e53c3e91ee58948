"""Storage: the tree and its undo, the journal on disk, a data directory's identity.

Imports only `errors`, `limits`, `values`, `bulk`, `gcpause` and `codec` from pyzdb: no sandbox,
no sockets. ``README.md`` beside this file is the map of its modules and their contracts.
"""

from pyzdb.storage.budget import MAX_ADOPT_NODES
from pyzdb.storage.durability import FsyncPolicy
from pyzdb.storage.endpoint import in_use_hint, read_endpoint, remove_endpoint, write_endpoint
from pyzdb.storage.files import fsync_directory
from pyzdb.storage.format import FORMAT_VERSION
from pyzdb.storage.journal import Journal
from pyzdb.storage.primitives import SMALL_DICT
from pyzdb.storage.scan import unreplayable
from pyzdb.storage.store import Store
from pyzdb.storage.tracked import TrackedDict, TrackedList

__all__ = [
    "FORMAT_VERSION",
    "MAX_ADOPT_NODES",
    "SMALL_DICT",
    "FsyncPolicy",
    "Journal",
    "Store",
    "TrackedDict",
    "TrackedList",
    "fsync_directory",
    "in_use_hint",
    "read_endpoint",
    "remove_endpoint",
    "unreplayable",
    "write_endpoint",
]
