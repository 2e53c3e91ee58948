"""Client side of the query language: turn a string, a lambda or a function into a `Request`.

pyzdb ships **source text**, never bytecode or a traced term tree: bytecode changes with every
CPython minor release (Pony ORM's lesson) and tracing cannot see `if`/`and`/`or` (RethinkDB's).
The server compiles the text itself under RestrictedPython, so the client never needs it.

Theory of operation
-------------------
- **A string** is checked with the plain compiler here (`text`), so a syntax error is raised on
  the client and never travels. The root is named `db`.
- **A lambda** or **a def** is found in the source of its file, and the text to ship is cut out
  of it (`functions`): a lambda's body in `eval` syntax, a def as a definition and a call in
  `exec` syntax, with the parameter's name as the root.
- **Free variables** (closure cells, and the globals the code loads that exist in its module) are
  shipped by value as parameters (`freevars`). Only data travels; anything else is refused here,
  naming the variable.

`Request.mode` says whether the request may write (`execute`) or not (`query`);
`Request.syntax` says how to compile `source`, which is independent: a def shipped as a query is
read-only `exec` code, a lambda shipped as an execute is writable `eval` code.

Modules: `request` (the `Request` and the errors), `build` (`capture` itself), `text`,
`functions`, `freevars`. They import only `pyzdb.errors`, `pyzdb.limits`, `pyzdb.api.sourcefind`
and each other: a client that captures never loads the data model, the sandbox or a socket.
"""

from pyzdb.api.capture.build import capture
from pyzdb.api.capture.freevars import check_param_name
from pyzdb.api.capture.request import CaptureError, Mode, Request, Syntax, UnshippableValue

__all__ = [
    "CaptureError",
    "Mode",
    "Request",
    "Syntax",
    "UnshippableValue",
    "capture",
    "check_param_name",
]
