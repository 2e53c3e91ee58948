"""`pyzdb.net.aio.connect(uri)`: the remote database for asyncio, every request a coroutine.

    db = pyzdb.net.aio.connect("tcp://127.0.0.1:5559")
    await db.execute("db['x'] = 3")
    await db['x'].get()                 # the path proxy: reads and methods are awaitable
    await db['l'].append(4)
    async with db.transaction(): ...
    await db.close()

The options, request building, the resend schedule, reply matching, error mapping, File readers
and the commands are shared with the sync client (`pyzdb.net.commands`), and so is the query
model (`pyzdb.api.proxy.QueryModel`); only the socket loop below differs, by `await`. As with
threads on a sync `Connection`, while one task holds the lock the other tasks of the same
connection wait (up to the timeout) for it to be released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any, cast

import zmq
import zmq.asyncio

from pyzdb.api.capture import Mode
from pyzdb.api.hints import add_hints
from pyzdb.api.proxy import PathProxy, QueryModel
from pyzdb.api.watch import AsyncWatch
from pyzdb.codec import MAX_REQUEST_SIZE
from pyzdb.errors import ConnectionError, Error, LockTimeout, ReplicaBehind
from pyzdb.limits import DEFAULT_URI
from pyzdb.net.channel import Channel, Channels
from pyzdb.net.commands import (
    DEFAULT_TIMEOUT,
    REPLICA_POLL,
    Commands,
    ConnectionCore,
    Exchange,
    ReplicaWait,
    is_seconds,
)
from pyzdb.net.messages import MAX_WAIT

log = logging.getLogger("pyzdb.aio")


class AsyncPathProxy(PathProxy):
    """`db['a'][0]` of an `AsyncConnection`: every request it makes is a coroutine.

    Python's `len()`, `in`, iteration and item assignment cannot await, so they are spelled
    `await p.len()`, `await p.contains(x)`, `await p.get()`, `await p.set(v)`, `await
    p.delete()`; methods of the stored value (`await p.append(1)`) work as in the sync proxy.
    """

    __slots__ = ()

    def set(self, value: Any) -> Any:
        return self._ask(True, "{t} = value", "exec", value=value)

    def delete(self) -> Any:
        return self._ask(True, "del {t}", "exec")

    def len(self) -> Any:
        return self._ask(False, "len({t})")

    def contains(self, item: Any) -> Any:
        return self._ask(False, "item in {t}", item=item)

    def _cannot(self, *args: Any) -> Any:
        raise TypeError(
            "an asyncio path proxy cannot do that without await: use "
            "`await p.get()`, `await p.set(v)`, `await p.delete()`, `await p.len()` "
            "or `await p.contains(x)`"
        )

    __setitem__ = __delitem__ = __len__ = __contains__ = __iter__ = __bool__ = _cannot
    __iadd__ = __isub__ = __imul__ = __ior__ = _cannot


class AsyncConnection(Commands, QueryModel):
    """A remote pyzdb database for asyncio; see `connect`."""

    _path_type = AsyncPathProxy
    _watch_type = AsyncWatch

    def __init__(
        self,
        uri: str,
        timeout: float = DEFAULT_TIMEOUT,
        read_uris: list[str] | None = None,
        *,
        max_message: int = MAX_REQUEST_SIZE,
        consistency: str = "read-your-writes",
        key: str | os.PathLike[str] | None = None,
    ) -> None:
        self._core = ConnectionCore(uri, timeout, read_uris, max_message, consistency, key)
        # A shadow of the process-wide context: asyncio sockets, one libzmq context.
        context = zmq.asyncio.Context.shadow(zmq.Context.instance().underlying)
        self._channels = Channels(context, self._core.credential)
        self._mutex = asyncio.Lock()  # one request at a time; held across a lock()
        self._owner: asyncio.Task[Any] | None = None  # the task holding the lock
        self._heartbeat: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<pyzdb.net.aio.AsyncConnection {self._core.uri}>"

    # -- requests ------------------------------------------------------------------------------

    async def _send(self, op: str, **fields: Any) -> Any:
        if self._owner is not None and self._owner is asyncio.current_task():
            return await self._exchange(self._core.prepare(op, **fields))
        await self._acquire(self._core.timeout, "held it (a transaction)")
        try:
            exchange = self._core.prepare(op, **fields)
            while True:
                try:
                    return await self._exchange(exchange)
                except (ConnectionError, ReplicaBehind) as exc:
                    exchange = self._core.reroute(exchange, exc)
        finally:
            self._mutex.release()

    async def _acquire(self, timeout: float, what: str) -> None:
        try:
            await asyncio.wait_for(self._mutex.acquire(), timeout)
        except asyncio.TimeoutError:
            raise LockTimeout(
                f"another task of this connection {what} for more than {timeout:g} s"
            ) from None
        if self._closed:
            self._mutex.release()
            raise Error("the connection is closed")

    async def _exchange(self, exchange: Exchange, channel: Channel | None = None) -> Any:
        """`Connection._exchange` with awaits: send, wait, resend on a fresh socket if the
        connection dropped."""
        channel = channel or self._channels.get(exchange.uri)
        await channel.send_async(exchange.frame)
        while True:
            if await channel.poll_async(exchange.wait_time()):
                reply = exchange.accept(await channel.receive_async())
                if reply is not None:
                    return self._core.outcome(exchange, reply, _no_blob_reader)
            elif exchange.retry():
                if channel.lost():
                    channel.reset()
                    await channel.send_async(exchange.frame)
            else:
                channel.reset()
                raise exchange.timeout_error()

    # -- the query model: what cannot be spelled without await -----------------------------------

    async def _captured(self, mode: Mode, source: Any, params: dict[str, Any]) -> Any:
        """`QueryModel._captured`, awaited: the server's errors get their hints too."""
        try:
            return await super()._captured(mode, source, params)
        except Exception as error:  # a hint where the fix is known (`pyzdb.api.hints`)
            add_hints(error, source if isinstance(source, str) else None, mode)
            raise

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("item assignment cannot await: use `await db[key].set(value)`")

    def __delitem__(self, key: Any) -> None:
        raise TypeError("item deletion cannot await: use `await db[key].delete()`")

    def len(self) -> Any:
        """`await db.len()`: the number of keys at the root."""
        return self._root().len()

    def contains(self, key: Any) -> Any:
        """`await db.contains(key)`: is `key` at the root?"""
        return self._root().contains(key)

    async def read_file(self, file: Any) -> bytes:
        """The bytes of a `pyzdb.File` this database stores (`File.read()` would block)."""
        return cast(bytes, await self._send("blob", source=file.digest))

    async def wait_replicas(self, n: int, timeout: float) -> int:
        """Wait until `n` replicas applied this connection's last write; how many did."""
        waiting = ReplicaWait(self._core.written_seq, n, timeout)
        while (count := waiting.count(await self._send("info"))) is None:
            await asyncio.sleep(REPLICA_POLL)
        return count

    # -- the lock --------------------------------------------------------------------------------

    async def lock(self, timeout: float | None = None) -> None:
        """Exclusive access for this task until `unlock()`; see `Connection.lock`."""
        wait = self._core.timeout if timeout is None else timeout
        if not is_seconds(wait):
            raise ValueError(f"timeout must be None or seconds in 0..{MAX_WAIT}, not {timeout!r}")
        if self._owner is not None and self._owner is asyncio.current_task():
            raise Error("the database is already locked by this connection")
        await self._acquire(wait, "held its lock")
        try:
            lease = await self._exchange(self._core.prepare("lock", wait=wait))
        except BaseException:
            self._mutex.release()
            raise
        self._core.holding = True
        self._owner = asyncio.current_task()
        self._heartbeat = asyncio.create_task(self._beat(lease / 3))

    async def unlock(self) -> None:
        await self._release("unlock")

    async def rollback(self) -> None:
        await self._release("rollback")

    async def _release(self, op: str) -> None:
        if not self._core.holding or self._owner is not asyncio.current_task():
            raise Error("the database is not locked")
        try:
            await self._exchange(self._core.prepare(op))
        except LockTimeout:
            if op != "rollback":
                raise
        finally:
            self._core.holding = False
            self._owner = None
            if self._heartbeat is not None:
                self._heartbeat.cancel()
                self._heartbeat = None
            self._mutex.release()

    async def _beat(self, interval: float) -> None:
        channel = self._channels.fresh(self._core.uri)
        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self._exchange(
                        self._core.prepare("ping", txn=False, limit=interval), channel
                    )
                except Error as exc:
                    log.debug("heartbeat ping failed: %s", exc)
        finally:
            channel.close()

    async def close(self) -> None:
        """Roll back a transaction this task still holds, then close the sockets."""
        if self._closed:
            return
        if self._core.holding and self._owner is asyncio.current_task():
            with contextlib.suppress(Error):
                await self._release("rollback")
        if self._heartbeat is not None:  # another task's lock: the server's lease ends it
            self._heartbeat.cancel()
            self._heartbeat = None
        self._closed = True
        self._channels.close()

    async def __aenter__(self) -> AsyncConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _no_blob_reader(digest: str) -> bytes:
    raise Error("File.read() would block the event loop: use `await db.read_file(f)`")


def connect(
    uri: str = DEFAULT_URI,
    timeout: float = DEFAULT_TIMEOUT,
    read_uris: list[str] | None = None,
    consistency: str = "read-your-writes",
    key: str | os.PathLike[str] | None = None,
) -> AsyncConnection:
    """The asyncio twin of `pyzdb.connect` (`key` too); the connection opens on the first
    request."""
    return AsyncConnection(uri, timeout, read_uris, consistency=consistency, key=key)


__all__ = ["connect", "AsyncConnection", "AsyncPathProxy"]
