"""`pyzdb.sandbox_rules()` and `pyzdb --rules`: what a query may use, for people who installed
pyzdb with pip and so have no `sandbox/README.md` at hand.

Why generated: the text is built from the tables the sandbox enforces
(`attributes.ATTRIBUTES`, `builtins.GUARDED_BUILTINS`), so it cannot drift from the rules. Those
modules hold plain tables and functions and do not import RestrictedPython, so a client may
read them.
"""

from __future__ import annotations

import textwrap

#: The project's documentation of the sandbox (threat model, every rule with its reason).
DOCS_URL = "https://github.com/asrp/pyzdb"

_SUMMARY = """\
A query is Python run next to the data, with:
- the root as `db` (or the lambda's parameter), and the parameters you passed by name;
- the builtins below, and the methods below of the data types; f-strings, % formatting and
  str.format/format_map (fields may index data; no attribute traversal);
- no import and no modules (use the builtins: x ** 0.5 for a square root, round(), abs(),
  divmod(), min/max/sum), no classes, no open(), no getattr/eval/exec, no names starting
  with '_', no print (the value of the expression, or of db.execute's last statement if it
  is an expression, is the result).
Budgets per request: time, steps (items iterated), size of anything built, memory, result
size. An overrun raises pyzdb.LimitExceeded and changes nothing; a refusal raises
pyzdb.SecurityError.
"""


def sandbox_rules() -> str:
    """The rules of the query sandbox as text: builtins, methods per type, what is refused.

    >>> "sorted" in sandbox_rules() and "startswith" in sandbox_rules()
    True
    """
    from pyzdb.sandbox.attributes import ATTRIBUTES, FILE_ATTRIBUTES
    from pyzdb.sandbox.builtins import GUARDED_BUILTINS

    width = 96
    lines = [_SUMMARY, "Builtins:"]
    lines.append(
        textwrap.fill(
            " ".join(sorted(GUARDED_BUILTINS)), width, initial_indent="  ", subsequent_indent="  "
        )
    )
    lines.append("")
    lines.append("Methods and attributes, by type:")
    for cls, names in ATTRIBUTES.items():
        if names:
            text = f"{cls.__name__}: " + " ".join(sorted(names))
            lines.append(textwrap.fill(text, width, initial_indent="  ", subsequent_indent="    "))
    lines.append("  pyzdb.File: " + " ".join(sorted(FILE_ATTRIBUTES)))
    lines.append("")
    lines.append(f"The threat model and the reason for every rule: {DOCS_URL} (sandbox/README.md)")
    return "\n".join(lines)


__all__ = ["sandbox_rules", "DOCS_URL"]
