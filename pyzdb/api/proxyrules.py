"""What a path proxy is not: its value. Comparisons, truth, text and arithmetic refuse.

Why: `db['status'] == 'done'` on a proxy used to be `False` whatever was stored (object
identity), and `print(db['status'])` showed `<pyzdb path db['status']>`: silently wrong
answers. A proxy stands for a place in the tree, not a value; the value is one request away
(`.get()`), and guessing when to send that request would hide a round trip in every `if`. So
every operation that needs the value raises a `TypeError` that says how to get it, and only
the operations that have a meaning on a place (`[...]`, `.get()`, `len`, `in`, iteration,
assignment, augmented assignment, method calls) send requests.

Slices are places too: `db['users'][:2]` is the path `db['users'][a:b:c]` whose bounds travel
as parameters like any key.
"""

from __future__ import annotations

from typing import Any, NoReturn

#: Operations that need the value, by the dunder that implements them.
_VALUE_OPERATIONS = {
    "__eq__": "==",
    "__ne__": "!=",
    "__lt__": "<",
    "__le__": "<=",
    "__gt__": ">",
    "__ge__": ">=",
    "__bool__": "truth (if, and, or, not)",
    "__str__": "str()",
    "__format__": "format() and f-strings",
    "__bytes__": "bytes()",
    "__int__": "int()",
    "__float__": "float()",
    "__complex__": "complex()",
    "__index__": "use as an index",
    "__round__": "round()",
    "__abs__": "abs()",
    "__neg__": "unary -",
    "__pos__": "unary +",
    "__invert__": "~",
    "__add__": "+",
    "__radd__": "+",
    "__sub__": "-",
    "__rsub__": "-",
    "__mul__": "*",
    "__rmul__": "*",
    "__truediv__": "/",
    "__rtruediv__": "/",
    "__floordiv__": "//",
    "__rfloordiv__": "//",
    "__mod__": "%",
    "__rmod__": "%",
    "__pow__": "**",
    "__rpow__": "**",
    "__matmul__": "@",
    "__rmatmul__": "@",
    "__and__": "&",
    "__rand__": "&",
    "__or__": "|",
    "__ror__": "|",
    "__xor__": "^",
    "__rxor__": "^",
    "__lshift__": "<<",
    "__rlshift__": "<<",
    "__rshift__": ">>",
    "__rrshift__": ">>",
    "__divmod__": "divmod()",
    "__rdivmod__": "divmod()",
    "__hash__": "hash() (a dict key, a set member)",
}


def _refusal(dunder: str, operation: str) -> Any:
    def refuse(self: Any, *args: Any) -> NoReturn:
        path = self._spelling()
        raise TypeError(
            f"{operation} on {path} needs its value, and a path is not its value: call "
            f".get() first ({path}.get()), or run the whole expression on the database "
            f'with db.query("...")'
        )

    refuse.__name__ = dunder
    refuse.__doc__ = f"Refused: {operation} needs the value; call .get()."
    return refuse


def refuse_value_operations(cls: type) -> None:
    """Give `cls` every value operation, each raising the TypeError that says to call .get().

    `__hash__` refuses too: a place is not a key, and its value might be one.
    """
    for dunder, operation in _VALUE_OPERATIONS.items():
        setattr(cls, dunder, _refusal(dunder, operation))


def path_step(index: int, key: Any, params: dict[str, Any]) -> str:
    """The source of one step of a path, its key (or slice bounds) put into `params`."""
    if isinstance(key, slice):
        params[f"k{index}a"], params[f"k{index}b"], params[f"k{index}c"] = (
            key.start,
            key.stop,
            key.step,
        )
        return f"[k{index}a:k{index}b:k{index}c]"
    params[f"k{index}"] = key
    return f"[k{index}]"


def spell_step(key: Any) -> str:
    """One step of a path as Python source: `['users']`, `[:2]`, `[1:10:2]`."""
    if isinstance(key, slice):
        parts = ["" if part is None else repr(part) for part in (key.start, key.stop, key.step)]
        return "[" + (":".join(parts) if key.step is not None else ":".join(parts[:2])) + "]"
    return f"[{key!r}]"


__all__ = ["refuse_value_operations", "path_step", "spell_step"]
