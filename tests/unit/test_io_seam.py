"""The client has one I/O seam: only the ``_http*`` modules use aiohttp (``_client`` names its
``ClientSession`` type for injection). Everything else goes through them, so no aiohttp
exception can escape."""

from __future__ import annotations

import ast
from pathlib import Path

import backendai_jupyter.client as client_pkg

SEAM = {"_http.py", "_http_errors.py", "_http_wrappers.py"}
TYPE_ONLY = {"_client.py"}


def aiohttp_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "aiohttp"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "aiohttp":
            found.append(node.module or "")
    return found


def test_only_the_seam_imports_aiohttp() -> None:
    root = Path(client_pkg.__file__).parent
    offenders = {
        p.name: aiohttp_imports(p)
        for p in root.glob("*.py")
        if p.name not in SEAM | TYPE_ONLY and aiohttp_imports(p)
    }
    assert offenders == {}


def test_client_module_uses_aiohttp_only_as_a_type() -> None:
    source = (Path(client_pkg.__file__).parent / "_client.py").read_text()
    uses = [line.strip() for line in source.splitlines() if "aiohttp." in line]
    assert all("aiohttp.ClientSession" in line for line in uses), uses
