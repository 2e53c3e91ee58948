"""Tests of `pyzdb.api.capture`: what a string, a lambda or a def becomes on the wire.

Every captured request is also *run* with plain Python, the way the server binds it (the root
under `root`, the params as globals), and compared with calling the original lambda or function
on an equal plain dict. That equality is the contract the server relies on.

This module uses `from __future__ import annotations` on purpose: the future flag is part of
every code object in it, so the lookup must compile candidates with the same flags.
"""

from __future__ import annotations

import ast
import builtins
import copy
import functools
import linecache
import math
import pathlib
import sys
import types
from collections.abc import Callable, Mapping
from string import ascii_lowercase

import pytest

from pyzdb.api.capture import (
    CaptureError,
    Request,
    UnshippableValue,
    capture,
    check_param_name,
)
from pyzdb.api.capture.freevars import FILE_MODULE
from pyzdb.errors import Error
from pyzdb.limits import MAX_SOURCE

DATA = {
    "a": 1,
    "b": 2,
    "l": [1, 2, 3, 4, 5],
    "u": [{"name": "ann", "age": 31}, {"name": "bob", "age": 25}, {"name": "cy", "age": 40}],
    "t": {"x": {"y": {}}},
}

THRESHOLD = 2
KEYS = ("a", "b")


def run(req: Request, data: dict) -> object:
    """Evaluate a request with plain Python as the server does (minus the sandbox)."""
    names = {"__builtins__": builtins, **req.params, req.root: data}
    if req.syntax == "eval":
        return eval(compile(req.source, "<query>", "eval"), names)
    tree = ast.parse(req.source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<query>", "exec"), names)
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), "<query>", "eval"), names)


def check(fn: Callable[[dict], object], mode: str = "query") -> Request:
    """Capture `fn`, and check the contract: the shipped request does what `fn` does."""
    req = capture(fn, mode, {})
    shipped, local = copy.deepcopy(DATA), copy.deepcopy(DATA)
    assert run(req, shipped) == fn(local)
    assert shipped == local  # same writes, for execute
    return req


# -- strings ---------------------------------------------------------------------------------


def test_string_query_is_shipped_unchanged_in_eval_syntax() -> None:
    req = capture("[v*v for v in db['l'] if v % 2]", "query", {})
    assert req == Request("query", "eval", "[v*v for v in db['l'] if v % 2]", {}, "db")
    assert run(req, copy.deepcopy(DATA)) == [1, 9, 25]


def test_string_execute_is_exec_syntax_and_returns_last_expression() -> None:
    req = capture("db['a'] = 5\ndb['a'] * k", "execute", {"k": 2})
    assert (req.mode, req.syntax, req.params) == ("execute", "exec", {"k": 2})
    data = copy.deepcopy(DATA)
    assert run(req, data) == 10 and data["a"] == 5


def test_string_line_endings_and_block_indentation_are_canonicalised() -> None:
    req = capture("\r\n    x = db['a']\r\n    x + 1\r\n", "execute", {})
    assert req.source == "\nx = db['a']\nx + 1\n"
    assert capture("  db['a']", "query", {}).source == "db['a']"


def test_valid_string_is_left_byte_for_byte_alone() -> None:
    # textwrap.dedent would empty the whitespace-only line inside the literal.
    source = "s = '''a\n   \nb'''\ns"
    assert capture(source, "execute", {}).source == source


def test_syntax_error_is_raised_on_the_client_with_line_and_offset() -> None:
    with pytest.raises(SyntaxError) as info:
        capture("db['l'] +", "query", {})
    assert (info.value.lineno, info.value.offset) == (1, 10)
    with pytest.raises(SyntaxError) as info:
        capture("x = 1\nif x\n    y = 2", "execute", {})
    assert (info.value.lineno, info.value.offset) == (2, 5)


def test_statement_in_a_query_is_a_syntax_error() -> None:
    with pytest.raises(SyntaxError):
        capture("db['a'] = 1", "query", {})


def test_symbol_table_errors_are_caught_on_the_client_too() -> None:
    with pytest.raises(SyntaxError, match="outside function"):
        capture("return 1", "execute", {})
    with pytest.raises(SyntaxError, match="outside function"):
        capture("(yield)", "query", {})


def test_null_byte_is_a_syntax_error() -> None:
    with pytest.raises(SyntaxError):
        capture("db['a']\x00", "query", {})


def test_source_over_64_kib_is_refused() -> None:
    capture(repr("é" * ((MAX_SOURCE - 2) // 2)), "query", {})
    with pytest.raises(CaptureError, match="limit") as info:  # counted in UTF-8 bytes
        capture(repr("é" * (MAX_SOURCE // 2)), "query", {})
    assert isinstance(info.value, ValueError) and isinstance(info.value, Error)


def test_deeply_nested_source_is_refused_cleanly() -> None:
    with pytest.raises((CaptureError, SyntaxError)):
        capture("-" * 60000 + "1", "query", {})


def test_mode_and_argument_type_are_checked() -> None:
    with pytest.raises(ValueError, match="mode"):
        capture("db", "write", {})  # type: ignore[arg-type]
    for bad, desc in [
        (42, "a value of type int"),
        (len, "a function"),
        ("".join, "a function"),
        (functools.partial(lambda db, x: x, x=1), "a function"),
        (Reports().total, "a bound method"),
    ]:
        with pytest.raises(TypeError, match=f"string, a lambda or a def function, not {desc}"):
            capture(bad, "query", {})  # type: ignore[arg-type]


# -- lambdas ---------------------------------------------------------------------------------


def test_lambda_body_is_shipped_with_its_parameter_as_root() -> None:
    req = check(lambda d: sorted(d["l"], reverse=True)[:2])
    assert req == Request("query", "eval", 'sorted(d["l"], reverse=True)[:2]', {}, "d")


def test_two_lambdas_on_one_line_resolve_to_their_own_source() -> None:
    f, g = lambda db: db["a"], lambda db: db["b"]
    assert check(f).source == 'db["a"]'
    assert check(g).source == 'db["b"]'
    same1, same2 = lambda db: db["a"] + 1, lambda db: db["a"] + 1
    assert check(same1).source == check(same2).source == 'db["a"] + 1'


def test_nested_lambdas() -> None:
    req = check(lambda d: sorted(d["u"], key=lambda u: u["age"])[0]["name"])
    assert req.source == 'sorted(d["u"], key=lambda u: u["age"])[0]["name"]'
    assert (req.root, req.params) == ("d", {})


def test_inner_lambda_captured_on_its_own() -> None:
    make = lambda db: lambda d: d["b"] + len(db)
    inner = make([7, 8])
    req = check(inner)
    assert (req.source, req.root, req.params) == ('d["b"] + len(db)', "d", {"db": [7, 8]})


def test_lambdas_made_in_a_comprehension_share_its_variable() -> None:
    fs = [(lambda db: db[k]) for k in KEYS]  # noqa: B023 - late binding is the point
    # Python's late binding: both lambdas read the comprehension's last `k`, and so does the
    # shipped request.
    assert [check(f).params for f in fs] == [{"k": "b"}, {"k": "b"}]


def test_lambda_in_a_loop_ships_the_current_values() -> None:
    reqs = [capture(lambda db: db[k], "query", {}) for k in KEYS]  # noqa: B023
    assert [r.params for r in reqs] == [{"k": "a"}, {"k": "b"}]


def test_lambda_with_closure_cells() -> None:
    def make(limit: int) -> Callable[[dict], object]:
        names = ["ann", "cy"]
        return lambda db: [u["age"] for u in db["u"] if u["age"] > limit and u["name"] in names]

    req = check(make(30))
    assert req.params == {"limit": 30, "names": ["ann", "cy"]}


def test_lambda_referencing_module_globals() -> None:
    req = check(lambda db: [db[k] for k in KEYS if db[k] >= THRESHOLD])
    assert req.params == {"KEYS": ("a", "b"), "THRESHOLD": 2}


def test_lambda_using_only_builtins_has_no_params() -> None:
    req = check(lambda db: (len(db["l"]), sum(db["l"]), max(db["l"]), sorted(db)))
    assert req.params == {}


def test_name_missing_everywhere_is_left_to_the_server() -> None:
    req = capture(lambda db: db[not_defined_anywhere], "query", {})  # noqa: F821
    assert req.params == {}


def test_multi_line_lambda_in_a_call_spanning_lines() -> None:
    limit = 26
    req = capture(
        lambda db: [
            u["name"]
            for u in db["u"]
            if u["age"] > limit  # a comment inside
        ],
        "query",
        {},
    )
    assert req.source.startswith("[\n") and "# a comment inside" in req.source
    assert run(req, copy.deepcopy(DATA)) == ["ann", "cy"]


def test_lambda_body_spanning_lines_outside_its_own_brackets_is_parenthesised() -> None:
    # fmt: off
    f = (lambda db:
         db["a"] +
         db["b"])
    # fmt: on
    assert check(f).source == '(db["a"] +\n         db["b"])'
    walrus = lambda db: (n := len(db["l"])) * n
    assert check(walrus).source == '(n := len(db["l"])) * n'
    assert check(lambda db: (x := db["a"])).source == '(x := db["a"])'  # noqa: F841


def test_lambda_in_execute_is_writable_eval_code() -> None:
    req = check(lambda db: db["l"].append(6), "execute")
    assert (req.mode, req.syntax) == ("execute", "eval")


def test_lambda_with_other_parameters_is_refused() -> None:
    with pytest.raises(CaptureError, match=r"\(db, limit=3\).*exactly one parameter"):
        capture(lambda db, limit=3: db["l"][:limit], "query", {})
    for bad in (lambda: 1, lambda *a: 1, lambda db, *, k=1: 1, lambda db, **kw: 1):
        with pytest.raises(CaptureError, match="exactly one parameter"):
            capture(bad, "query", {})


def test_generator_lambda_is_refused() -> None:
    with pytest.raises(CaptureError, match="generator"):
        capture(lambda db: (yield db), "query", {})


def test_root_parameter_starting_with_underscore_is_refused() -> None:
    with pytest.raises(CaptureError, match="'_'"):
        capture(lambda _: _["a"], "query", {})


def test_lambda_without_source_is_refused_with_the_string_form_suggested() -> None:
    no_source = [eval("lambda db: db['a']")]
    namespace: dict[str, object] = {}
    exec("f = lambda db: db['a']\ndef g(db):\n    return db", namespace)
    no_source += [namespace["f"], namespace["g"]]
    for fn in no_source:
        with pytest.raises(CaptureError, match=r"no source.*db\.query\(\"\.\.\.\", name=value\)"):
            capture(fn, "query", {})  # type: ignore[arg-type]


def test_ipython_cell_registered_in_linecache() -> None:
    name = "<ipython-input-1-abc>"
    cell = (
        "limit = 2\n"
        "q = lambda db: [v for v in db['l'] if v > limit]; r = lambda db: db['b']\n"
        "def w(db):\n"
        "    db['a'] = limit\n"
        "    return db['a']\n"
    )
    linecache.cache[name] = (len(cell), None, cell.splitlines(True), name)
    try:
        namespace: dict[str, object] = {}
        exec(compile(cell, name, "exec"), namespace)
        q = check(namespace["q"])  # type: ignore[arg-type]
        assert (q.source, q.params) == ("[v for v in db['l'] if v > limit]", {"limit": 2})
        assert check(namespace["r"]).source == "db['b']"  # type: ignore[arg-type]
        w = check(namespace["w"], "execute")  # type: ignore[arg-type]
        assert w.source == "def w(db):\n    db['a'] = limit\n    return db['a']\nw(db)\n"
    finally:
        del linecache.cache[name]


def test_source_edited_since_compilation_is_refused() -> None:
    name = "<ipython-input-2-def>"
    namespace: dict[str, object] = {}
    exec(compile("f = lambda db: db['a']\n", name, "exec"), namespace)
    edited = "f = lambda db: db['b']\n"
    linecache.cache[name] = (len(edited), None, [edited], name)
    try:
        with pytest.raises(CaptureError, match="does not match"):
            capture(namespace["f"], "query", {})  # type: ignore[arg-type]
    finally:
        del linecache.cache[name]


# -- defs ------------------------------------------------------------------------------------


def test_def_is_shipped_with_a_call_line_in_exec_syntax() -> None:
    bonus = 10

    def raise_ages(db):
        for u in db["u"]:
            u["age"] += bonus
        return [u["age"] for u in db["u"] if u["age"] > THRESHOLD]

    req = check(raise_ages, "execute")
    assert req.source == (
        "def raise_ages(db):\n"
        '        for u in db["u"]:\n'
        '            u["age"] += bonus\n'
        '        return [u["age"] for u in db["u"] if u["age"] > THRESHOLD]\n'
        "raise_ages(db)\n"
    )
    assert (req.mode, req.syntax, req.root) == ("execute", "exec", "db")
    assert req.params == {"bonus": 10, "THRESHOLD": 2}


def test_def_as_a_query_is_read_only_exec_code() -> None:
    def total(d):
        s = 0
        for v in d["l"]:
            s += v
        return s

    req = check(total)
    assert (req.mode, req.syntax, req.root) == ("query", "exec", "d")


def test_recursive_def_does_not_ship_itself() -> None:
    def depth(db):
        return 1 + max((depth(v) for v in db.values() if isinstance(v, dict)), default=0)

    assert check(depth).params == {}


def test_one_line_def() -> None:
    def first(db): return db["l"][0]  # noqa: E704  # fmt: skip

    assert check(first).source == 'def first(db): return db["l"][0]\nfirst(db)\n'


def decorate(fn: Callable[..., object]) -> Callable[..., object]:
    return fn


@decorate
def annotated(db: Mapping[str, object], /) -> list[int]:
    return [len(db), len(db["l"])]  # type: ignore[arg-type]


def test_decorators_annotations_and_defaults_stay_on_the_client() -> None:
    req = check(annotated)
    assert req.source == ('def annotated(db):\n    return [len(db), len(db["l"])]\nannotated(db)\n')
    assert req.params == {}  # neither `decorate` nor `Mapping` travels


class Reports:
    @staticmethod
    def oldest(db):
        return max(db["u"], key=lambda u: u["age"])["name"]

    def total(self, db):
        return sum(db["l"])


def test_def_in_a_class_body() -> None:
    req = check(Reports.oldest)
    assert req.source == (
        'def oldest(db):\n        return max(db["u"], key=lambda u: u["age"])["name"]\noldest(db)\n'
    )


def test_multi_line_strings_in_a_def_keep_their_exact_value() -> None:
    # fmt: off
    def text(db):
        return """first
   second
""" + f"""{db["a"]}
        third"""
    # fmt: on

    req = check(text)
    assert req.source.startswith('def text(db):\n        return """first\n   second\n')


def test_def_with_nested_defs_and_lambdas_using_the_root() -> None:
    def report(db):
        def age_of(name):
            return next(u["age"] for u in db["u"] if u["name"] == name)

        return sorted(db["u"], key=lambda u: -age_of(u["name"]))[0]["name"]

    assert check(report).params == {}


def test_def_signature_and_kind_are_checked() -> None:
    def two(db, limit=3):
        return db

    def gen(db):
        yield db

    async def coro(db):
        return db

    def _private(db):
        return db

    def db(db):
        return db

    with pytest.raises(CaptureError, match="exactly one parameter"):
        capture(two, "execute", {})
    for bad in (gen, coro):
        with pytest.raises(CaptureError, match="generator or coroutine"):
            capture(bad, "execute", {})
    with pytest.raises(CaptureError, match="'_'"):
        capture(_private, "execute", {})
    with pytest.raises(CaptureError, match="its own parameter"):
        capture(db, "execute", {})


def test_explicit_param_cannot_take_the_function_name() -> None:
    def f(db):
        return db

    with pytest.raises(CaptureError, match="shipped function"):
        capture(f, "execute", {"f": 1})


# -- free variables --------------------------------------------------------------------------


class Thing:
    pass


def helper(x: object) -> object:
    return x


def test_non_data_free_variables_are_refused_naming_them(tmp_path: object) -> None:
    thing = Thing()
    cases: list[tuple[Callable[[dict], object], str, str]] = [
        (lambda db: db["l"][int(math.pi)], "math", "a module"),
        (lambda db: helper(db), "helper", "a function"),
        (lambda db: db[thing], "thing", "a value of type test_capture.Thing"),
        (lambda db: db[Thing], "Thing", "a class"),
    ]
    with open(__file__) as handle:
        cases.append((lambda db: db[handle], "handle", "an open file"))
        for fn, name, desc in cases:
            with pytest.raises(UnshippableValue) as info:
                capture(fn, "query", {})
            message = str(info.value)
            assert f"free variable {name!r} ({desc})" in message, message
            assert 'pass a value instead with db.query("...", name=value)' in message
            assert isinstance(info.value, TypeError) and isinstance(info.value, Error)


def test_non_data_inside_a_container_is_located() -> None:
    config = {"keys": ["a"], "hook": {"on": [1, helper]}}
    with pytest.raises(UnshippableValue, match=r"config\['hook'\]\['on'\]\[1\] is a function"):
        capture(lambda db: db[config["keys"][0]], "execute", {})
    loop: list[object] = [1]
    loop.append(loop)
    with pytest.raises(UnshippableValue, match="contains itself"):
        capture(lambda db: loop, "query", {})
    deep: list[object] = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(UnshippableValue, match="nested deeper"):
        capture(lambda db: deep, "query", {})


def test_all_data_types_travel() -> None:
    value = {
        None: [True, 1, 2.5, "s", b"b"],
        (1, "t"): {frozenset({1, 2}), 3},
        "f": frozenset("ab"),
        "shared": [[1]] * 2,
    }
    assert check(lambda db: value).params == {"value": value}


def test_file_values_travel_when_pyzdb_values_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType(FILE_MODULE)

    class File:
        pass

    fake.File = File  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, FILE_MODULE, fake)
    blob = File()
    assert capture(lambda db: blob, "query", {}).params == {"blob": blob}
    impostor = Thing()
    with pytest.raises(UnshippableValue):
        capture(lambda db: impostor, "query", {})


def test_explicit_params_override_and_add_to_free_variables() -> None:
    req = capture(
        lambda db: db[KEYS[0]] + db["l"][int(math.pi)], "query", {"math": 3.5, "extra": [1]}
    )
    assert req.params == {"KEYS": ("a", "b"), "math": 3.5, "extra": [1]}


def test_explicit_params_must_be_data() -> None:
    with pytest.raises(UnshippableValue, match=r"parameter 'm' \(a module\)"):
        capture("db", "query", {"m": math})


def test_empty_closure_cell_is_refused() -> None:
    def make() -> Request:
        f = lambda db: db[later]
        request = capture(f, "query", {})
        later = 1
        return request

    with pytest.raises(CaptureError, match="'later'.*before assignment"):
        make()


def test_free_variable_with_a_refused_name() -> None:
    _hidden = 1
    with pytest.raises(CaptureError, match="free variable '_hidden'.*'_'"):
        capture(lambda db: db["l"][_hidden], "query", {})


def test_global_still_bound_to_the_builtin_is_not_a_param() -> None:
    name = "<ipython-input-3-len>"
    cell = "len = len\nf = lambda db: len(db['l'])\n"
    linecache.cache[name] = (len(cell), None, cell.splitlines(True), name)
    try:
        namespace: dict[str, object] = {}
        exec(compile(cell, name, "exec"), namespace)
        assert capture(namespace["f"], "query", {}).params == {}  # type: ignore[arg-type]
    finally:
        del linecache.cache[name]


# -- parameter names -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x", "limit_2", "ünïcode"])
def test_good_param_names(name: str) -> None:
    check_param_name(name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("_x", "starts with '_'"),
        ("__class__", "starts with '_'"),
        ("db", "root"),
        ("for", "identifier"),
        ("a-b", "identifier"),
        ("", "identifier"),
        (3, "identifier"),
        ("\ufb01", "spelled 'fi'"),
    ],
)
def test_bad_param_names(name: object, reason: str) -> None:
    with pytest.raises(CaptureError, match=reason):
        check_param_name(name)


def test_param_names_are_checked_against_the_lambdas_root() -> None:
    assert capture(lambda d: d[db], "query", {"db": "a"}).params == {"db": "a"}  # noqa: F821
    with pytest.raises(CaptureError, match="root"):
        capture(lambda d: d["a"], "query", {"d": 1})
    with pytest.raises(CaptureError, match="starts with '_'"):
        capture("db[_x]", "query", {"_x": 1})


def test_request_is_frozen_and_slotted() -> None:
    req = capture("db", "query", {})
    with pytest.raises(AttributeError):
        req.source = "x"  # type: ignore[misc]
    assert not hasattr(req, "__dict__")


def test_capture_imports_nothing_from_the_server_side() -> None:
    # The client never needs RestrictedPython nor the data model; each part of capture leans on
    # `pyzdb.errors`, `pyzdb.limits`, `pyzdb.api.sourcefind` and the other parts only.
    import pyzdb.api.capture
    import pyzdb.api.sourcefind

    package = pathlib.Path(pyzdb.api.capture.__file__).parent
    parts = sorted(package.glob("*.py"))
    assert {part.stem for part in parts} >= {"__init__", "build", "freevars", "functions", "text"}
    allowed = {"pyzdb.errors", "pyzdb.limits", "pyzdb.api.sourcefind"}
    allowed |= {f"pyzdb.api.capture.{part.stem}" for part in parts}
    used: set[str] = set()
    for part in parts:
        tree = ast.parse(part.read_text(encoding="utf-8"))
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        imported |= {
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        }
        assert not any(name.startswith("RestrictedPython") for name in imported), part
        pyzdb_names = {name for name in imported if name.startswith("pyzdb")}
        assert pyzdb_names <= allowed, (part, pyzdb_names - allowed)
        used |= pyzdb_names
    assert used >= {"pyzdb.errors", "pyzdb.limits", "pyzdb.api.sourcefind"}
    # sourcefind: stdlib only (readline, sys)
    with open(pyzdb.api.sourcefind.__file__, encoding="utf-8") as handle:
        found = ast.parse(handle.read())
    assert not [
        node
        for node in ast.walk(found)
        if isinstance(node, ast.ImportFrom) and (node.level or "pyzdb" in str(node.module))
    ]


def test_capture_names_the_module_that_defines_file() -> None:
    """Capture recognises `File` by its module without importing it: the name must be true."""
    from pyzdb.values import File

    assert File.__module__ == FILE_MODULE


def test_method_call_on_an_imported_name_is_matched():
    """CPython 3.11+ compiles `name.method()` differently when `name` came from an import."""
    request = capture(lambda db: ascii_lowercase.upper(), "query")
    assert request.source == "ascii_lowercase.upper()"
    assert request.params == {"ascii_lowercase": ascii_lowercase}


def test_a_module_used_through_a_method_call_is_refused_by_name():
    with pytest.raises(UnshippableValue, match="'math'"):
        capture(lambda db: math.sqrt(db["x"]), "query")
