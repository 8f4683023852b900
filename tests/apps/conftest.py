"""Fixtures: one local endpoint (``create_app`` on 127.0.0.1:0) per module and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from backendai_jupyter.client import Client, ClientConfig, parse_endpoints
from backendai_jupyter.server import ServerConfig, create_app
from backendai_jupyter.server.manager.state import KEYPAIRS

IMAGE = "cr.backend.ai/stable/python:3.13-ubuntu24.04"


class Local:
    def __init__(self, server: TestServer, app: web.Application) -> None:
        self.server, self.app = server, app
        self.url = str(server.make_url("")).rstrip("/")
        kp = next(iter(app[KEYPAIRS].values()))
        self.config = ClientConfig(
            endpoints=parse_endpoints(self.url), access_key=kp.access_key,
            secret_key=kp.secret_key,
        )


@pytest.fixture(scope="module")
async def local(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Local]:
    data: Path = tmp_path_factory.mktemp("apps") / "data"
    app = create_app(ServerConfig(data_dir=data, capacity={"cpu": "4", "mem": "8g"}))
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield Local(server, app)
    finally:
        await server.close()


@pytest.fixture(scope="module")
async def client(local: Local) -> AsyncIterator[Client]:
    c = Client(local.config)
    try:
        yield c
    finally:
        await c.close()
