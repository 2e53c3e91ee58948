"""The lazy path proxy and the interface shared by the embedded and the remote database.

`db['users'][3]` builds a `PathProxy` and sends nothing; a request leaves only when a value is
needed (`.get()`, `len()`, `in`, iteration, a method call, an assignment). Each of those is one
request of generated source (`db[k0][k1].append(a0)`) whose keys and arguments travel as
parameters, never spliced into the text, so any key is safe and the compile cache hits.

As in TinyDB's `Query`, item access never resolves to a method: `db['keys']` is the item named
"keys", and `db.keys()` is the method. Attribute names starting with `_` are not methods of the
stored data, so they raise AttributeError (that also keeps `copy`, `pickle` and IPython's
probing from sending requests).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, cast

from pyzdb.api.capture import Mode, Syntax, capture
from pyzdb.api.hints import add_hints
from pyzdb.api.labels import respell_notes, spell
from pyzdb.api.proxyrules import path_step, refuse_value_operations, spell_step
from pyzdb.limits import ROOT_NAME

#: Methods of the stored types that never write: called through a read-only query, so they
#: also work against a read-only replica.
READ_METHODS = frozenset(
    {
        "get",
        "keys",
        "values",
        "items",
        "copy",
        "count",
        "index",
        "startswith",
        "endswith",
        "find",
        "lower",
        "upper",
        "split",
        "strip",
        "join",
        "replace",
        "isdigit",
        "bit_length",
    }
)

#: Dict methods that return live views: the proxy returns them as lists, like the seed did.
VIEW_METHODS = frozenset({"keys", "values", "items"})


class PathProxy:
    """A path from the root; cheap to build, resolved on the server when used."""

    __slots__ = ("_db", "_path", "_written")

    def __init__(self, db: QueryModel, path: tuple[Any, ...]) -> None:
        self._db = db
        self._path = path
        self._written = False

    def _target(self, params: dict[str, Any]) -> str:
        steps = []
        for index, key in enumerate(self._path):
            if type(key) is slice:
                steps.append(path_step(index, key, params))
            else:
                params[f"k{index}"] = key
                steps.append(f"[k{index}]")
        return "db" + "".join(steps)

    def _ask(self, write: bool, template: str, syntax: Syntax = "eval", **values: Any) -> Any:
        params: dict[str, Any] = {}
        target = self._target(params)
        params.update(values)
        source = template.format(t=target)
        try:
            return self._db.evaluate(write, source, syntax, params)
        except Exception as error:
            respell_notes(error, source, spell(source, params))
            add_hints(error, None, "execute")
            raise

    # -- reading -----------------------------------------------------------------------------

    def get(self, *args: Any) -> Any:
        """The value at this path; with arguments it is the stored dict's own `get`."""
        if args:
            return self._method("get", args, {})
        return self._ask(False, "{t}")

    _run = get

    def __len__(self) -> int:
        return cast(int, self._ask(False, "len({t})"))

    def __contains__(self, item: Any) -> bool:
        return cast(bool, self._ask(False, "item in {t}", item=item))

    def __iter__(self) -> Iterator[Any]:
        return iter(self._ask(False, "list({t})"))

    def __repr__(self) -> str:
        return f"<pyzdb path {self._spelling()}>"

    def _spelling(self) -> str:
        """The path as the user wrote it: `db['users'][:2]`."""
        return "db" + "".join(spell_step(key) for key in self._path)

    # -- writing -----------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> PathProxy:
        return type(self)(self._db, self._path + (key,))

    def __setitem__(self, key: Any, value: Any) -> None:
        if _already_written(value, self._path + (key,)):
            return
        self[key]._ask(True, "{t} = value", "exec", value=value)

    def __delitem__(self, key: Any) -> None:
        self[key]._ask(True, "del {t}", "exec")

    def _augment(self, operator: str, value: Any) -> PathProxy:
        """`db['c'] += 1` in one request; the parent's `__setitem__` then sees it is done."""
        self._ask(True, "{t} " + operator + " value", "exec", value=value)
        done = PathProxy(self._db, self._path)
        done._written = True
        return done

    def __iadd__(self, value: Any) -> PathProxy:
        return self._augment("+=", value)

    def __isub__(self, value: Any) -> PathProxy:
        return self._augment("-=", value)

    def __imul__(self, value: Any) -> PathProxy:
        return self._augment("*=", value)

    def __ior__(self, value: Any) -> PathProxy:
        return self._augment("|=", value)

    def __itruediv__(self, value: Any) -> PathProxy:
        return self._augment("/=", value)

    def __ifloordiv__(self, value: Any) -> PathProxy:
        return self._augment("//=", value)

    def __imod__(self, value: Any) -> PathProxy:
        return self._augment("%=", value)

    def __ipow__(self, value: Any) -> PathProxy:
        return self._augment("**=", value)

    def __iand__(self, value: Any) -> PathProxy:
        return self._augment("&=", value)

    def __ixor__(self, value: Any) -> PathProxy:
        return self._augment("^=", value)

    # -- methods of the stored value -----------------------------------------------------------

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._method(name, args, kwargs)

    def _method(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        values = {f"a{index}": arg for index, arg in enumerate(args)}
        names = [f"a{index}" for index in range(len(args))]
        for index, (key, arg) in enumerate(kwargs.items()):
            values[f"w{index}"] = arg
            names.append(f"{key}=w{index}")
        template = "{t}." + name + "(" + ", ".join(names) + ")"
        if name in VIEW_METHODS:
            template = f"list({template})"
        return self._ask(name not in READ_METHODS, template, **values)


refuse_value_operations(PathProxy)


def _already_written(value: Any, path: tuple[Any, ...]) -> bool:
    return isinstance(value, PathProxy) and value._written and value._path == path


class Transaction:
    """`with db.transaction():`, or `async with` on an asyncio database: exclusive access over
    several requests, committed as one unit of undo. Leaving the block by an exception rolls
    every request of it back."""

    __slots__ = ("_db",)

    def __init__(self, db: QueryModel) -> None:
        self._db = db

    def __enter__(self) -> Any:
        self._db.lock()
        return self._db

    def __exit__(self, kind: type[BaseException] | None, *exc_info: object) -> None:
        if kind is None:
            self._db.unlock()
        else:
            self._db.rollback()

    async def __aenter__(self) -> Any:
        await self._db.lock()
        return self._db

    async def __aexit__(self, kind: type[BaseException] | None, *exc_info: object) -> None:
        if kind is None:
            await self._db.unlock()
        else:
            await self._db.rollback()


class QueryModel(abc.ABC):
    """The query model, written once for every database: the embedded and the remote one, sync
    and asyncio. Each method returns what `evaluate` (or the method it calls) returns: the value
    for a sync database, an awaitable for an asyncio one.

    `evaluate` is the contract between a database and everything here, the path proxy
    included: whoever implements it gets `query`, `execute`, `db[key]` and the rest.
    """

    #: The paths of this database (`db['a'][0]`): an asyncio database's await.
    _path_type: ClassVar[type[PathProxy]] = PathProxy

    @abc.abstractmethod
    def evaluate(
        self,
        write: bool,
        source: str,
        syntax: Syntax,
        params: dict[str, Any],
        root: str = ROOT_NAME,
    ) -> Any:
        """Evaluate one request and return its result.

        `source` is one expression (`syntax="eval"`) or statements (`"exec"`) over the root
        named `root`, with `params` bound as names; `write` says it may change the tree (an
        execute, atomic) or not (a query, read-only).
        """

    @abc.abstractmethod
    def lock(self) -> Any:
        """Exclusive access until `unlock()`; the requests in between form one unit."""

    @abc.abstractmethod
    def unlock(self) -> Any:
        """Commit the locked requests as one unit and let others in."""

    @abc.abstractmethod
    def rollback(self) -> Any:
        """Drop the locked requests and let others in."""

    @abc.abstractmethod
    def checkpoint(self) -> Any:
        """Write a checkpoint of the whole tree."""

    # -- the query model -----------------------------------------------------------------------

    def query(self, expr: Any, /, **params: Any) -> Any:
        """Evaluate one expression (a string or a lambda) read-only; return its value."""
        return self._captured("query", expr, params)

    def execute(self, source: Any, /, **params: Any) -> Any:
        """Run statements atomically; return the value of the last statement if it is an
        expression (else None)."""
        return self._captured("execute", source, params)

    def _captured(self, mode: Mode, source: Any, params: dict[str, Any]) -> Any:
        """Capture a query or an execute (`pyzdb.api.capture`) and evaluate it. An error gets
        a hint where the fix is known (`pyzdb.api.hints`); an asyncio database overrides this
        to hint at what its awaitable raises too."""
        try:
            request = capture(source, mode, params)
            return self.evaluate(
                mode == "execute", request.source, request.syntax, request.params, request.root
            )
        except Exception as error:
            add_hints(error, source if isinstance(source, str) else None, mode)
            raise

    # -- the root as a path --------------------------------------------------------------------

    def _root(self) -> PathProxy:
        return self._path_type(self, ())

    def __getitem__(self, key: Any) -> PathProxy:
        return self._path_type(self, (key,))

    def get(self, *args: Any) -> Any:
        """The whole tree; with arguments, the root dict's own `get(key, default)`."""
        return self._root().get(*args)

    def keys(self) -> Any:
        return self._root()._method("keys", (), {})

    def values(self) -> Any:
        return self._root()._method("values", (), {})

    def items(self) -> Any:
        return self._root()._method("items", (), {})

    # -- transactions ---------------------------------------------------------------------------

    def transaction(self) -> Transaction:
        """Exclusive access over several requests, committed as one unit of undo.

        Leaving the block by an exception rolls every request of it back.
        """
        return Transaction(self)

    def save(self) -> Any:
        """The seed's name for `checkpoint()`."""
        return self.checkpoint()


class DatabaseAPI(QueryModel):
    """What `pyzdb.open` and `pyzdb.connect` have in common: the query model, the root as a
    container (`len(db)`, `'k' in db`, `db['k'] = v`), undo, the lock, `info` and `close`.

    A database implements `evaluate` (see `QueryModel`) and the abstract methods below.
    """

    def __setitem__(self, key: Any, value: Any) -> None:
        self._root()[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._root()[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._root()

    def __len__(self) -> int:
        return len(self._root())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._root())

    def __bool__(self) -> bool:
        return True

    _run = QueryModel.get

    @abc.abstractmethod
    def undo(self) -> bool:
        """Take back the last committed unit (durably); False when there is nothing to undo."""

    @abc.abstractmethod
    def redo(self) -> bool:
        """Re-apply the last undone unit (durably); False when there is nothing to redo."""

    @abc.abstractmethod
    def history(self) -> list[dict[str, Any]]:
        """The undo units, oldest first, with their source labels and times."""

    @abc.abstractmethod
    def info(self) -> dict[str, dict[str, Any]]:
        """The database's state in sections, like Redis INFO (see `pyzdb.info`)."""

    def ping(self) -> None:
        """Check the database answers (a round trip for a server; nothing in-process)."""

    def __enter__(self) -> DatabaseAPI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abc.abstractmethod
    def close(self) -> None:
        """Release the database (an open transaction is rolled back)."""


__all__ = ["PathProxy", "QueryModel", "DatabaseAPI", "Transaction", "READ_METHODS"]
