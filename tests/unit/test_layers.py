"""Layers point one way: ``richchannel``, ``client`` ← ``display`` / ``workspace`` ← ``kernel``,
``magics``.

Checked on the source (every import statement, lazy ones inside functions included), so a
forbidden import cannot hide behind a code path the tests do not run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import backendai_jupyter

ROOT = Path(backendai_jupyter.__file__).parent
PACKAGE = "backendai_jupyter"

#: package → the sibling packages it must never import (its modules, at any depth).
FORBIDDEN = {
    "client": {"kernel", "magics", "server", "workspace", "display", "cli", "jobs"},
    "display": {"client", "kernel", "magics", "server", "workspace"},
    # The rich channel (frames, header, the remote programs) stands on nothing of ours.
    "richchannel": {
        "client", "display", "kernel", "magics", "server", "workspace", "widgets", "cli", "jobs"
    },
    # The workspace may start the local endpoint (server.local) lazily, nothing else above it.
    "workspace": {"magics", "kernel", "cli", "jobs", "widgets"},
    "widgets": {"kernel", "magics", "server", "cli", "jobs"},
    # The local endpoint speaks the wire protocol: it shares the client's pure functions only.
    "server": {"kernel", "magics", "workspace", "widgets", "display", "cli", "jobs"},
}


def absolute_imports(path: Path, root: Path = ROOT) -> list[str]:
    """Every module ``path`` imports, as absolute dotted names (relative imports resolved)."""
    module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if path.name == "__init__.py":
        module = package
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append(target)
            # ``from .. import server`` names a sub-module too
            found += [f"{target}.{alias.name}" for alias in node.names]
    return found


def _offends(name: str, forbidden: set[str]) -> bool:
    if not name.startswith(PACKAGE + "."):
        return False
    rest = name[len(PACKAGE) + 1 :]
    return any(rest == f or rest.startswith(f + ".") for f in forbidden)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(layer: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): bad
        for path in sorted((ROOT / layer).rglob("*.py"))
        if (bad := [n for n in absolute_imports(path) if _offends(n, FORBIDDEN[layer])])
    }
    assert offenders == {}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..server.local import x", "backendai_jupyter.server.local"),
        ("from .. import server", "backendai_jupyter.server"),
        ("import backendai_jupyter.magics", "backendai_jupyter.magics"),
        ("def f():\n    from ..kernel import kernel\n", "backendai_jupyter.kernel.kernel"),
    ],
)
def test_the_checker_sees_every_form(tmp_path: Path, source: str, expected: str) -> None:
    # A module placed as if it were backendai_jupyter/client/probe.py.
    fake_root = tmp_path / PACKAGE
    (fake_root / "client").mkdir(parents=True)
    probe = fake_root / "client" / "probe.py"
    probe.write_text(source)
    names = absolute_imports(probe, fake_root)
    assert expected in names
    assert _offends(expected, FORBIDDEN["client"])
