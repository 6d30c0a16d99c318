"""
The sans-IO codec in C{txfastcgi/fcgi/} never imports Twisted, nor anything
outside the standard library and itself.

Every module under the directory is checked, found by walking it, so modules
added later are covered without touching this file: statically (C{ast}), and by
importing them all in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FCGI = ROOT / "txfastcgi" / "fcgi"
PACKAGE = "txfastcgi.fcgi"

ALLOWED_FIRST_PARTY = (PACKAGE,)
"""First-party imports allowed in the codec: only the codec itself."""


def moduleFiles() -> list[Path]:
    """
    Every Python file under C{txfastcgi/fcgi/}, subpackages included.
    """
    return sorted(FCGI.rglob("*.py"))


def moduleName(path: Path) -> str:
    """
    The dotted module name of a file under the repository root.
    """
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def importedNames(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """
    The absolute module names a file imports, with line numbers: C{import},
    C{from ... import} (relative ones resolved), and C{importlib.import_module}
    or C{__import__} calls with a literal name.

    @param path: the file, which also places relative imports.
    @param source: its text, if not to be read from C{path}.
    """
    if source is None:
        source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    package = moduleName(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.append((node.lineno, module))
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            called = (
                function.attr
                if isinstance(function, ast.Attribute)
                else function.id
                if isinstance(function, ast.Name)
                else ""
            )
            first = node.args[0]
            if called in ("import_module", "__import__") and isinstance(
                first, ast.Constant
            ) and isinstance(first.value, str):
                names.append((node.lineno, first.value))
    return names


def isAllowed(module: str) -> bool:
    """
    Whether the codec may import C{module}: the standard library, or the
    codec's own modules.
    """
    top = module.partition(".")[0]
    if top == "twisted":
        return False
    if module == PACKAGE or module.startswith(PACKAGE + "."):
        return True
    return top in sys.stdlib_module_names


def test_directoryHasTheCodec() -> None:
    """
    The walk finds the codec's modules (so the checks below are not vacuous).
    """
    names = {path.stem for path in moduleFiles()}
    assert {"constants", "errors", "events", "records"} <= names


@pytest.mark.parametrize(
    "path", moduleFiles(), ids=[moduleName(path) for path in moduleFiles()]
)
def test_moduleImportsOnlyStdlib(path: Path) -> None:
    """
    The module imports nothing from Twisted and nothing outside the standard
    library and C{txfastcgi.fcgi}.
    """
    bad = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for line, module in importedNames(path)
        if not isAllowed(module)
    ]
    assert bad == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import twisted", ["twisted"]),
        ("from twisted.internet import reactor", ["twisted.internet"]),
        ("import os, twisted.web.http", ["os", "twisted.web.http"]),
        ("if TYPE_CHECKING:\n    from twisted.python import log", ["twisted.python"]),
        ("def f():\n    import attr", ["attr"]),
        ("import importlib\nimportlib.import_module('twisted.internet')",
         ["importlib", "twisted.internet"]),
        ("__import__('zope.interface')", ["zope.interface"]),
        ("from . import records", ["txfastcgi.fcgi"]),
        ("from .records import Record", ["txfastcgi.fcgi.records"]),
        ("from .. import cgienv", ["txfastcgi"]),
    ],
)
def test_checkerFindsImports(source: str, expected: list[str]) -> None:
    """
    The static check sees imports in any form and place, relative ones
    resolved against the package.
    """
    probe = FCGI / "_purity_probe.py"
    assert [name for _, name in importedNames(probe, source)] == expected


@pytest.mark.parametrize(
    "module, allowed",
    [
        ("struct", True),
        ("collections.abc", True),
        ("__future__", True),
        ("txfastcgi.fcgi.records", True),
        ("txfastcgi.fcgi", True),
        ("twisted", False),
        ("twisted.internet.reactor", False),
        ("zope.interface", False),
        ("attr", False),
        ("txfastcgi", False),
        ("txfastcgi.client", False),
        ("txfastcgi.fcgiextra", False),
    ],
)
def test_allowedModules(module: str, allowed: bool) -> None:
    """
    Only the standard library and the codec itself pass; other first-party
    modules (which may use Twisted) and third-party packages do not.
    """
    assert isAllowed(module) is allowed


_IMPORT_ALL = """
import importlib, json, sys

class _RefuseTwisted:
    attempts = []
    def find_spec(self, name, path=None, target=None):
        if name == "twisted" or name.startswith("twisted."):
            self.attempts.append(name)
        return None

refuse = _RefuseTwisted()
sys.meta_path.insert(0, refuse)
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps({
    "twisted": sorted(m for m in sys.modules if m == "twisted" or m.startswith("twisted.")),
    "attempts": refuse.attempts,
    "loaded": sorted(m for m in sys.modules if m.startswith("txfastcgi")),
}))
"""


def test_importingTheCodecLoadsNoTwisted() -> None:
    """
    Importing C{txfastcgi.fcgi} and every module under it in a fresh
    interpreter leaves C{twisted} out of C{sys.modules} (and nothing even
    tries to import it).
    """
    modules = sorted({PACKAGE} | {moduleName(path) for path in moduleFiles()})
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, json.dumps(modules)],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["twisted"] == []
    assert report["attempts"] == []
    assert set(modules) <= set(report["loaded"])
