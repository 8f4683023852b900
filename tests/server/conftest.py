"""Fixtures: the local endpoint (``create_app``) on 127.0.0.1:0 and a client bound to it."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from backendai_jupyter.client import Client, ClientConfig, parse_endpoints
from backendai_jupyter.server import ServerConfig, create_app
from backendai_jupyter.server.manager.state import CONFIG, KEYPAIRS

IMAGE = "cr.backend.ai/stable/python:3.13-ubuntu24.04"


def proc_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def marked_pids(marker: str) -> set[int]:
    """Host pids of live processes whose command line contains ``marker`` (sessions in a
    sandbox see other pids than the host, so tests find their processes by a marker)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and proc_alive(int(entry)):
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.add(int(entry))
    return found


def sleep_marker() -> str:
    """A unique ``sleep`` argument (seconds, about 300) that marks a test's processes."""
    return f"{300 + secrets.randbelow(10**6) / 10**6:.6f}"


class Local:
    """A running local endpoint: its app, URL, keypair and a client factory."""

    def __init__(self, server: TestServer, app: web.Application) -> None:
        self.server = server
        self.app = app
        self.url = str(server.make_url("")).rstrip("/")
        kp = next(iter(app[KEYPAIRS].values()))
        self.access_key, self.secret_key = kp.access_key, kp.secret_key
        self.clients: list[Client] = []

    def client(self, **overrides: Any) -> Client:
        values: dict[str, Any] = {
            "endpoints": parse_endpoints(self.url),
            "access_key": self.access_key,
            "secret_key": self.secret_key,
        }
        values.update(overrides)
        client = Client(ClientConfig(**values))
        self.clients.append(client)
        return client


@pytest.fixture
async def make_local(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Starts endpoints; each is shut down at the end (its sessions, their mounts and cgroups
    with it), also when the test failed before closing it itself."""
    servers: list[TestServer] = []

    async def start(**config: Any) -> Local:
        config.setdefault("capacity", {"cpu": "4", "mem": "8g"})
        cfg = ServerConfig(data_dir=tmp_path / f"data{len(servers)}", **config)
        app = create_app(cfg)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
        local = Local(server, app)
        locals_.append(local)
        return local

    locals_: list[Local] = []
    yield start
    for local in locals_:
        for c in local.clients:
            with contextlib.suppress(Exception):
                await c.close()
        with contextlib.suppress(Exception):
            await local.server.close()


@pytest.fixture
async def local(make_local: Callable[..., Any]) -> AsyncIterator[Local]:
    loc: Local = await make_local()
    try:
        yield loc
    finally:
        for c in loc.clients:
            await c.close()
        await loc.server.close()


@pytest.fixture
async def client(local: Local) -> Client:
    return local.client()


@pytest.fixture
async def session(client: Client) -> AsyncIterator[str]:
    info = await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "1g"})
    assert info.status == "RUNNING", info
    yield info.id
    await client.sessions.destroy(info.id)


__all__ = ["CONFIG", "IMAGE", "Local"]
