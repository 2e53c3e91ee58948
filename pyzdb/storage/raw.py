"""The builtin dict and list methods as plain functions, for the tree's own code.

Why: `TrackedDict` and `TrackedList` override every mutator to record it, so the code that
records (the primitives), the fast paths that inline a primitive, and adoption (which fills
containers not yet in the tree) must reach the builtin method underneath. Bound once here, a
call is one global lookup instead of an attribute lookup on the class each time. Each name is
the builtin method itself, tied to it by ``tests/test_store_fast_paths.py`` (the alias table):

>>> dset is dict.__setitem__ and lextend is list.extend
True
"""

from __future__ import annotations

__all__ = [
    "dclear",
    "ddel",
    "dget",
    "dnew",
    "dset",
    "dupdate",
    "lappend",
    "ldel",
    "lextend",
    "linsert",
    "lnew",
    "lset",
]

dnew = dict.__new__
dget = dict.get
dset = dict.__setitem__
ddel = dict.__delitem__
dclear = dict.clear
dupdate = dict.update
lnew = list.__new__
lset = list.__setitem__
ldel = list.__delitem__
lappend = list.append
linsert = list.insert
lextend = list.extend
