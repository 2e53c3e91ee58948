"""Scoped keys on the engine side: the subtree a scoped request sees as its whole `db`.

A scoped request is evaluated with its root name bound to the container at the scope's path
instead of the tree's root. Nothing in the sandbox reaches a container's parent (`_parent` is
an underscore name, refused at compile time) and the tree holds no aliases (storing a container
stores a copy), so from that binding no route leads outside the subtree. The path is resolved
at every request, so a scope created, replaced or deleted by an administrator takes effect at
once.
"""

from __future__ import annotations

from typing import Any

from pyzdb.errors import SecurityError


def resolve(root: dict[Any, Any], path: tuple[Any, ...]) -> dict[Any, Any]:
    """The dict at `path` below `root`; SecurityError (naming only the scope) if there is none."""
    node: Any = root
    for key in path:
        if not isinstance(node, dict) or key not in node:
            node = None
            break
        node = node[key]
    if not isinstance(node, dict):
        raise SecurityError(
            "this key's scope does not exist on the server, or is not a dict: an administrator "
            "must create it (for example `db[...] = {}` along the scope's path) first"
        )
    return node


__all__ = ["resolve"]
