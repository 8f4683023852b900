"""The local endpoint's structure: it imports its own modules normally (a bug in one sub-package
must fail loudly, not silently remove its routes), registers every route from the one table, and
takes API-version differences from the version table it shares with the client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import backendai_jupyter.server as server_pkg
from backendai_jupyter.client._versioning import KNOWN_VERSIONS, SINCE, Features
from backendai_jupyter.server.manager.app import create_app
from backendai_jupyter.server.manager.routes import ROUTES, Access
from backendai_jupyter.server.manager.state import Keypair, ServerConfig

ROOT = Path(server_pkg.__file__).parent


def _guarded_own_imports(path: Path) -> list[int]:
    """Lines of ``try: from . import x`` blocks whose handler catches ImportError."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Try):
            continue
        own = [
            n
            for b in node.body
            for n in ast.walk(b)
            if isinstance(n, ast.ImportFrom) and n.level > 0
        ]
        catches = [ast.unparse(h.type) for h in node.handlers if h.type is not None]
        if own and any("ImportError" in c for c in catches):
            lines.append(node.lineno)
    return lines


def test_server_imports_its_modules_normally() -> None:
    offenders = {
        str(p.relative_to(ROOT)): lines
        for p in ROOT.rglob("*.py")
        if (lines := _guarded_own_imports(p))
    }
    assert offenders == {}


def test_no_version_literals_outside_the_table() -> None:
    """Version thresholds come from ``client/_versioning.py``: no ``(6, "2022...")`` tuples and
    no ``"v5."`` prefix checks in the server."""
    offenders = []
    for p in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if (
                isinstance(node, ast.Tuple)
                and len(node.elts) == 2
                and isinstance(node.elts[0], ast.Constant)
                and isinstance(node.elts[0].value, int)
                and isinstance(node.elts[1], ast.Constant)
                and isinstance(node.elts[1].value, str)
                and node.elts[1].value.isdigit()
            ):
                offenders.append(f"{p.name}:{node.lineno}")
            if isinstance(node, ast.Constant) and node.value in ("v5.", "v6.", "v8.20240315"):
                offenders.append(f"{p.name}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("version", KNOWN_VERSIONS)
def test_app_routes_are_the_table_rows_of_its_version(
    version: tuple[int, str], tmp_path: Path
) -> None:
    text = f"v{version[0]}.{version[1]}"
    kp = Keypair("AKIATESTTESTTESTTEST", "secret")
    app = create_app(ServerConfig(data_dir=tmp_path, api_version=text, keypair=kp))
    registered = {
        (r.method, r.resource.canonical)  # type: ignore[union-attr]
        for r in app.router.routes()
    }
    features = Features(version)
    expected = {
        (row.method, row.path.replace("{tail:.*}", "{tail}"))
        for row in ROUTES
        if row.exists(features)
    }
    assert registered == expected


def test_every_table_feature_is_known() -> None:
    for row in ROUTES:
        for feature in (row.since, row.until):
            assert feature is None or feature in SINCE


@pytest.mark.parametrize(
    "version,gql,download_post,rename,v5_transfers",
    [
        ((5, "20191215"), "/admin/graphql", False, False, True),
        ((6, "20200815"), "/admin/graphql", False, False, False),
        ((6, "20220315"), "/admin/gql", False, True, False),
        ((9, "20250722"), "/admin/gql", True, True, False),
    ],
)
def test_version_routes(
    version: tuple[int, str], gql: str, download_post: bool, rename: bool, v5_transfers: bool
) -> None:
    f = Features(version)
    paths = {(r.method, r.path) for r in ROUTES if r.exists(f)}
    assert (("POST", "/admin/gql") in paths) == (gql == "/admin/gql")
    assert (("POST", "/session/{session_name}/download") in paths) == download_post
    assert (("GET", "/session/{session_name}/download") in paths) == (not download_post)
    assert (("POST", "/session/{session_name}/rename") in paths) == rename
    assert (("POST", "/folders/{name}/upload") in paths) == v5_transfers
    assert (("POST", "/folders/{name}/request-upload") in paths) == (not v5_transfers)


def test_access_kinds() -> None:
    kinds = {(r.method, r.path): r.access for r in ROUTES}
    assert kinds[("GET", "/")] is Access.ANONYMOUS
    assert kinds[("POST", "/server/login")] is Access.WEBSERVER
    assert kinds[("PATCH", "/storage-proxy/upload")] is Access.STORAGE
    assert kinds[("GET", "/storage-proxy/download")] is Access.STORAGE
    assert kinds[("POST", "/session")] is Access.SIGNED
