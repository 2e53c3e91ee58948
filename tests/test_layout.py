"""The house rules of `pyzdb/`, read from the source: which package may import which, nobody
reaching into another package's private names, `import pyzdb` staying light, and the sizes.

The arrows (docs/internals.md draws them):

- `errors`, `limits`, `version`, `gcpause` import nothing from pyzdb (and anyone may import
  `gcpause`, the one pause of the cyclic GC);
- `codec`, `values`, `plain`, `bulk` import only `errors`, `limits` and each other;
- `api/` adds those three (never the sandbox, storage, net, server, cli or the core);
  `api/capture.py` imports only `errors`, `limits` and `api/sourcefind.py`, which imports
  nothing from pyzdb (the client captures lambdas without the server's machinery);
- `storage/` and `sandbox/` import the data layer only (errors, limits, values, plain, bulk, codec);
- the core (`engine`, `embedded`, `scope`, `info`) adds `version`, `storage`, `sandbox`, `api`;
- `net/` (and its public facade `pyzdb.aio`) adds `version` and `api` to the data layer: a
  client loads no RestrictedPython;
- `server/` imports anything but `cli/`; `cli/` and `pyzdb.__main__` import anything;
- `pyzdb/__init__` imports the light layers only; the rest on first use (its `_LAZY`).

Every import counts, also one inside a function or under `TYPE_CHECKING`: a lazy arrow is
still an arrow. A module in none of these layers fails the test until it is given one.

Sizes: no module over 500 lines, no class over 250 lines, no function over a cyclomatic
complexity of 15 (ruff's C901, `noqa` ignored), unless the README.md of the module's own folder
(`pyzdb/<package>/README.md`; `pyzdb/README.md` for a top-level module) says why in a section
titled "Size exceptions" that names it in backticks: the module by file name (`store.py`), a
class by name (`Request`), a function by its qualified name (`decode_request`,
`Store.apply`).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pyzdb"

MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 250
MAX_COMPLEXITY = 15

#: Each layer: the modules in it (a name covers its submodules) and the layers it may import.
#: A layer may always import its own modules.
LAYERS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "errors": (("pyzdb.errors",), frozenset()),
    "gcpause": (("pyzdb.gcpause",), frozenset()),
    "limits": (("pyzdb.limits",), frozenset()),
    "version": (("pyzdb.version",), frozenset()),
    "codec": (("pyzdb.codec",), frozenset({"errors", "limits", "values", "bulk", "plain"})),
    "values": (("pyzdb.values",), frozenset({"errors", "limits", "codec", "bulk", "plain"})),
    "plain": (("pyzdb.plain",), frozenset({"errors", "limits", "codec", "bulk", "values"})),
    "bulk": (("pyzdb.bulk",), frozenset({"errors", "limits", "codec", "values", "plain"})),
    "sourcefind": (("pyzdb.api.sourcefind",), frozenset()),
    "capture": (("pyzdb.api.capture",), frozenset({"errors", "limits", "sourcefind"})),
    "api": (
        ("pyzdb.api",),
        frozenset(
            {"errors", "limits", "values", "plain", "codec", "bulk", "capture", "sourcefind"}
        ),
    ),
    "storage": (
        ("pyzdb.storage",),
        frozenset({"errors", "limits", "values", "plain", "bulk", "codec"}),
    ),
    "sandbox": (
        ("pyzdb.sandbox",),
        frozenset({"errors", "limits", "values", "plain", "bulk", "codec"}),
    ),
    "core": (
        ("pyzdb.engine", "pyzdb.embedded", "pyzdb.scope", "pyzdb.info", "pyzdb.changefeed"),
        frozenset(
            {"errors", "limits", "version", "values", "plain", "bulk", "codec", "storage"}
            | {"sandbox"}
            | {"api", "capture", "sourcefind"}
        ),
    ),
    "net": (
        ("pyzdb.net", "pyzdb.aio"),
        frozenset(
            {"errors", "limits", "version", "values", "plain", "bulk", "codec", "api"}
            | {"capture"}
            | {"sourcefind"}
        ),
    ),
    "server": (
        ("pyzdb.server",),
        frozenset(
            {"errors", "limits", "version", "values", "plain", "bulk", "codec", "api"}
            | {"capture"}
            | {"sourcefind", "storage", "sandbox", "core", "net", "facade"}
        ),
    ),
    "cli": (
        ("pyzdb.cli", "pyzdb.__main__"),
        frozenset(
            {"errors", "limits", "version", "values", "plain", "bulk", "codec", "api"}
            | {"capture"}
            | {"sourcefind", "storage", "sandbox", "core", "net", "server", "facade"}
        ),
    ),
    "facade": (
        ("pyzdb",),
        frozenset(
            {"errors", "limits", "version", "values", "plain", "bulk", "codec", "api"}
            | {"capture"}
            | {"sourcefind"}
        ),
    ),
}

#: Layers every module may import: they import nothing from pyzdb themselves.
ANYONE = frozenset({"gcpause"})

#: What `import pyzdb` must not load: the engine and everything behind it.
HEAVY = ("RestrictedPython", "pyzdb.sandbox", "pyzdb.storage", "pyzdb.server", "pyzdb.engine")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def owner(self) -> str:
        """Whose private names this module may use: its subpackage's, or (a top-level
        module) only its own."""
        parts = self.name.split(".")
        is_package = self.path.name == "__init__.py"
        if len(parts) > 2 or (is_package and len(parts) == 2):
            return ".".join(parts[:2])
        return self.name

    @property
    def readme(self) -> Path:
        return self.path.parent / "README.md"


@cache
def modules() -> dict[str, Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        found[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


def layer_of(name: str) -> str | None:
    """The layer of module `name`: the one with the longest prefix that covers it (`pyzdb`
    itself covers only its `__init__`)."""
    best, length = None, -1
    for layer, (prefixes, _) in LAYERS.items():
        for prefix in prefixes:
            covers = name == prefix or (prefix != "pyzdb" and name.startswith(prefix + "."))
            if covers and len(prefix) > length:
                best, length = layer, len(prefix)
    return best


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # the pyzdb module imported from (resolved: a submodule if the name is one)
    name: str | None  # the name taken from it (`from m import name`), if any


def pyzdb_imports(module: Module) -> list[Import]:
    """Every import of a pyzdb module in `module`, wherever it stands."""
    known = modules()
    found = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found += [
                Import(node.lineno, alias.name, None)
                for alias in node.names
                if alias.name.split(".")[0] == "pyzdb"
            ]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            if base.split(".")[0] != "pyzdb":
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in known:
                    found.append(Import(node.lineno, submodule, None))
                else:
                    found.append(Import(node.lineno, base, alias.name))
    return found


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.name.split(".")
    if module.path.name != "__init__.py":
        package.pop()
    package = package[: len(package) - node.level + 1]
    return ".".join([*package, *([node.module] if node.module else [])])


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# -- import arrows -------------------------------------------------------------------------------


def test_every_module_has_a_layer():
    assert [name for name in modules() if layer_of(name) is None] == []


def test_imports_follow_the_package_arrows():
    wrong = []
    for module in modules().values():
        mine = layer_of(module.name)
        if mine is None:
            continue
        allowed = LAYERS[mine][1] | {mine} | ANYONE
        for line, target in sorted({(found.line, found.module) for found in pyzdb_imports(module)}):
            theirs = layer_of(target)
            if theirs not in allowed:
                wrong.append(
                    f"{module.path.relative_to(PACKAGE.parent)}:{line}: {module.name} "
                    f"({mine}) imports {target} ({theirs})"
                )
    assert wrong == [], "imports against the arrows:\n" + "\n".join(wrong)


def test_no_module_uses_another_packages_private_names():
    wrong = []
    known = modules()
    for module in known.values():
        where = module.path.relative_to(PACKAGE.parent)
        for found in pyzdb_imports(module):
            if found.module not in known or known[found.module].owner == module.owner:
                continue
            if found.name is not None and _private(found.name):
                wrong.append(f"{where}:{found.line}: imports {found.name} from {found.module}")
            elif any(_private(part) for part in found.module.split(".")):
                wrong.append(f"{where}:{found.line}: imports the private module {found.module}")
        for line, target, name in _private_attributes(module):
            if known[target].owner != module.owner:
                wrong.append(f"{where}:{line}: uses {target}.{name}")
    assert wrong == [], "private names used across packages:\n" + "\n".join(wrong)


def _private_attributes(module: Module) -> list[tuple[int, str, str]]:
    """(line, module, name) of each `alias._name` where `alias` is an imported pyzdb module."""
    known = modules()
    aliases: dict[str, str] = {}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "pyzdb":
                    bound = alias.asname or alias.name.split(".")[0]
                    aliases[bound] = alias.name if alias.asname else "pyzdb"
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
    found = []
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = [node.attr]
        value = node.value
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if not isinstance(value, ast.Name) or value.id not in aliases:
            continue
        parts = [*aliases[value.id].split("."), *reversed(chain)]
        # the name right after the longest module path is the one taken from that module
        for end in range(len(parts) - 1, 0, -1):
            target = ".".join(parts[:end])
            if target in known:
                if _private(parts[end]):
                    found.append((node.lineno, target, parts[end]))
                break
    return found


def _loaded(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running `code`."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def _heavy(loaded: list[str], heavy: tuple[str, ...]) -> list[str]:
    """The modules of `loaded` that are, or are inside, one of `heavy`."""
    return [name for name in loaded if any(_inside(name, prefix) for prefix in heavy)]


def _inside(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_import_pyzdb_loads_neither_the_engine_nor_the_client():
    loaded = _loaded("import pyzdb")
    assert _heavy(loaded, (*HEAVY, "pyzdb.embedded", "pyzdb.net", "pyzdb.cli")) == []


@pytest.mark.parametrize("code", ["import pyzdb\npyzdb.connect", "import pyzdb.aio"])
def test_a_client_loads_no_restrictedpython_and_no_engine(code):
    assert _heavy(_loaded(code), HEAVY) == []


# -- sizes ---------------------------------------------------------------------------------------


@cache
def size_exceptions(readme: Path) -> frozenset[str]:
    """The names in backticks in the "Size exceptions" section of `readme`."""
    if not readme.exists():
        return frozenset()
    names: set[str] = set()
    level = None
    for line in readme.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"(#+)\s+(.*?)\s*$", line)
        if heading:
            depth = len(heading[1])
            if level is not None and depth <= level:
                level = None
            if heading[2].lower() == "size exceptions":
                level = depth
            continue
        if level is not None:
            names.update(re.findall(r"`([^`]+)`", line))
    return frozenset(names)


def _excepted(module: Module, name: str) -> bool:
    return name in size_exceptions(module.readme)


def _definitions(tree: ast.AST, prefix: str = "") -> list[tuple[str, ast.AST]]:
    """(qualified name, node) of every class and function, nested ones too."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + node.name
            found.append((name, node))
            found += _definitions(node, name + ".")
        else:
            found += _definitions(node, prefix)
    return found


def test_no_module_is_over_500_lines():
    over = []
    for module in modules().values():
        lines = len(module.path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES and not _excepted(module, module.path.name):
            over.append(f"{module.path.relative_to(PACKAGE.parent)}: {lines} lines")
    assert over == [], "modules over 500 lines:\n" + "\n".join(over)


def test_no_class_is_over_250_lines():
    over = []
    for module in modules().values():
        for name, node in _definitions(module.tree):
            if not isinstance(node, ast.ClassDef):
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_CLASS_LINES and not _excepted(module, name):
                where = module.path.relative_to(PACKAGE.parent)
                over.append(f"{where}:{node.lineno}: class {name}, {lines} lines")
    assert over == [], "classes over 250 lines:\n" + "\n".join(over)


def test_no_function_is_over_complexity_15():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--isolated",
            "--no-cache",
            "--ignore-noqa",
            "--select",
            "C901",
            "--config",
            f"lint.mccabe.max-complexity={MAX_COMPLEXITY}",
            "--output-format",
            "json",
            str(PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stderr
    by_path = {module.path: module for module in modules().values()}
    over = []
    for finding in json.loads(done.stdout):
        module = by_path[Path(finding["filename"]).resolve()]
        row = finding["location"]["row"]
        names = [
            name
            for name, node in _definitions(module.tree)
            if not isinstance(node, ast.ClassDef) and node.lineno == row
        ]
        if not names or not _excepted(module, names[0]):
            where = module.path.relative_to(PACKAGE.parent)
            over.append(f"{where}:{row}: {', '.join(names)}: {finding['message']}")
    assert over == [], "functions over complexity 15:\n" + "\n".join(over)
