"""`pyzdb.aio`: the asyncio client, `await db.query(...)`; the public name of `pyzdb.net.aio`."""

from pyzdb.net.aio import AsyncConnection, AsyncPathProxy, connect

__all__ = ["connect", "AsyncConnection", "AsyncPathProxy"]
