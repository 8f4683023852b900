"""Storage / user-config tests: the modules under test mounted on a minimal in-process app.

``create_app`` (the real server core) is written in parallel; until it is usable these tests build
a ``web.Application`` with just what the folder and user-config routes need: the config and
keypairs AppKeys, a scheduler stand-in for ``resource_usage``, the problem+json error middleware and
a fake auth middleware that stores ``request["keypair"]`` (header ``X-Test-AK`` picks the caller).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from backendai_jupyter.server import storage as folders
from backendai_jupyter.server.manager import auth
from backendai_jupyter.server.manager.errors import Problem, problem_response
from backendai_jupyter.server.manager.routes import register_routes
from backendai_jupyter.server.manager.scheduler import SCHEDULER
from backendai_jupyter.server.manager.state import CONFIG, KEYPAIRS, Keypair, ServerConfig
from backendai_jupyter.server.manager.userconfig import USER_CONFIG, UserConfigStore
from backendai_jupyter.server.storage import FOLDER_STORE, FolderStore

AK1 = "AKIATESTUSER1AAAAAAA"
AK2 = "AKIATESTUSER2BBBBBBB"


class FakeScheduler:
    def __init__(self) -> None:
        self.total = {"cpu": "8", "mem": "17179869184"}
        self.used = {"cpu": "2", "mem": "4294967296"}

    def usage(self) -> dict[str, dict[str, str]]:
        return {"total": dict(self.total), "used": dict(self.used)}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def fake_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if not request.path.startswith(folders.STORAGE_PREFIX):
            request[auth.ACCESS_KEY] = request.headers.get("X-Test-AK", AK1)
        return await handler(request)
    except Problem as p:
        return problem_response(p)


def make_app(data_dir: Path, api_version: str = "v9.20250722") -> web.Application:
    app = web.Application(middlewares=[fake_auth])
    app[CONFIG] = ServerConfig(data_dir=data_dir, api_version=api_version)
    app[KEYPAIRS] = {
        AK1: Keypair(AK1, "s1", user_email="one@localhost"),
        AK2: Keypair(AK2, "s2", user_email="two@localhost"),
    }
    app[SCHEDULER] = FakeScheduler()  # type: ignore[misc]
    app[FOLDER_STORE] = FolderStore(app)
    app[USER_CONFIG] = UserConfigStore(app)
    register_routes(app, app[CONFIG].features, groups={"folders", "userconfig"})
    return app


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def client(data_dir: Path) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_app(data_dir))) as c:
        yield c


@pytest.fixture
async def real_server(data_dir: Path) -> AsyncIterator[TestServer]:
    """S1's real ``create_app`` (HMAC auth, version emulation, scheduler) with our modules."""
    from backendai_jupyter.server.manager.app import create_app

    keypair = Keypair(AK1, "s1-secret-key", user_email="one@localhost")
    app = create_app(ServerConfig(data_dir=data_dir, keypair=keypair))
    async with TestServer(app) as server:
        yield server


@pytest.fixture
async def client_v5(data_dir: Path) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_app(data_dir, "v5.20191215"))) as c:
        yield c
