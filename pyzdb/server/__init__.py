"""`pyzdb-server`: the ZeroMQ loop, its supervisor, locks, auth, feeds and replicas.

The map of the package is its README.md.
"""

from pyzdb.server.loop import Server
from pyzdb.server.main import server_main
from pyzdb.server.options import DEFAULT_DATA, ServerConfig, check_bind
from pyzdb.server.sessions import ReplyCache
from pyzdb.server.supervisor import Supervisor

__all__ = [
    "DEFAULT_DATA",
    "ReplyCache",
    "Server",
    "ServerConfig",
    "Supervisor",
    "check_bind",
    "server_main",
]
