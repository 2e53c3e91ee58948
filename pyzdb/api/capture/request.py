"""What capturing makes, and how it fails: `Request`, its `Mode` and `Syntax`, and the errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pyzdb.errors import Error
from pyzdb.limits import ROOT_NAME

Mode = Literal["query", "execute"]
Syntax = Literal["eval", "exec"]


class CaptureError(Error, ValueError):
    """The argument cannot become a request: no source, bad signature, bad name, too large."""


class UnshippableValue(Error, TypeError):
    """A free variable or parameter is not data (a module, function, class, file, object)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One query or execute, as it travels: source text plus the values it names.

    `mode` is what the request may do ("query": read-only, "execute": may write); `syntax` is how
    the server compiles `source` ("eval": one expression, "exec": statements whose last
    expression statement gives the value). `root` is the name the database root is bound to;
    `params` are bound as globals beside it.
    """

    mode: Mode
    syntax: Syntax
    source: str
    params: dict[str, object]
    root: str = ROOT_NAME


__all__ = ["CaptureError", "Mode", "Request", "Syntax", "UnshippableValue"]
