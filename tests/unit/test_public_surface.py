"""The package's public surface: nothing outside ``client/`` and ``server/`` imports the client's
private modules (``client._*``: what they offer is exported by ``client/__init__``), and every
package's ``__all__`` is sorted and complete (every public name it binds is listed, every listed
name exists), the way httpx checks its own.

Both checks print the offenders.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import types
from pathlib import Path

import pytest

import backendai_jupyter

ROOT = Path(backendai_jupyter.__file__).parent
PACKAGE = "backendai_jupyter"
#: Where ``client._*`` may be imported: the client itself, and the server (it shares the
#: client's wire models and exceptions on purpose).
PRIVATE_OK = ("client", "server")
#: Names a package binds that are not part of its surface.
NOT_SURFACE = {"annotations", "TYPE_CHECKING"}


def _imported(path: Path) -> list[str]:
    """Every module ``path`` imports, as absolute dotted names (relative ones resolved)."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    package = parts if path.name == "__init__.py" else parts[:-1]
    if path.name == "__init__.py":
        package = package[:-1]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found += [target, *(f"{target}.{alias.name}" for alias in node.names)]
    return found


def test_no_private_client_imports_outside_client_and_server() -> None:
    private = re.compile(rf"^{PACKAGE}\.client\._")
    offenders = {
        str(path.relative_to(ROOT)): sorted({n for n in _imported(path) if private.match(n)})
        for path in sorted(ROOT.rglob("*.py"))
        if path.relative_to(ROOT).parts[0] not in PRIVATE_OK
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def _packages() -> list[str]:
    found = pkgutil.walk_packages(backendai_jupyter.__path__, PACKAGE + ".")
    return [PACKAGE, *sorted(m.name for m in found if m.ispkg)]


def surface_order(name: str) -> tuple[int, str]:
    """isort's order (ruff RUF022): CONSTANTS, then Classes, then functions."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


def _bound_public_names(module: types.ModuleType) -> set[str]:
    """Public names the package defines or re-exports from inside this project (modules and
    names imported from other libraries are not its surface)."""
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or name in NOT_SURFACE or isinstance(value, types.ModuleType):
            continue
        origin = getattr(value, "__module__", None)
        if isinstance(origin, str) and not origin.startswith(PACKAGE):
            continue
        names.add(name)
    return names


@pytest.mark.parametrize("package", _packages())
def test_all_is_sorted_and_complete(package: str) -> None:
    module = importlib.import_module(package)
    listed = list(getattr(module, "__all__", []))
    assert listed == sorted(listed, key=surface_order), f"{package}.__all__ is not sorted"
    assert sorted(_bound_public_names(module) - set(listed)) == [], f"missing in {package}"
    assert [n for n in listed if not hasattr(module, n)] == [], f"{package}.__all__ lists absent names"
