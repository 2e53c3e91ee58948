"""Storage: the tree and its undo, the journal on disk, a data directory's identity.

Imports only `errors`, `limits`, `values`, `bulk` and `codec` from pyzdb: no sandbox, no sockets.
"""
