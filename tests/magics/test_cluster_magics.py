"""The magics' cluster fixtures (:mod:`.cluster_magics`) close their workspace on every path:
against a tiny real aiohttp server that answers like a 24.03 manager, which has no GPU slots.

On the real 24.03 cluster the GPU fixture skipped before it closed its workspace, and the
client's aiohttp session, collected later, failed the setup of an unrelated test."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from backendai_jupyter.workspace.loop import get_loop

from .cluster_magics import cluster_magics


class Manager2403:
    """``GET /`` and ``GET /config/resource-slots`` as Backend.AI 24.03 answers them."""

    def __init__(self) -> None:
        self.slot_requests = 0

    async def hello(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "v8.20240315", "manager": "24.03.11"})

    async def slots(self, request: web.Request) -> web.Response:
        self.slot_requests += 1
        return web.json_response({"cpu": "count", "mem": "bytes"})


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[Manager2403, Path]]:
    """The fake manager on the workspaces' own loop, and a ``user.env`` that points at it."""
    fake = Manager2403()
    app = web.Application()
    app.router.add_get("/", fake.hello)
    app.router.add_get("/config/resource-slots", fake.slots)
    server = TestServer(app, host="127.0.0.1")
    loop = get_loop()
    loop.run(server.start_server())
    env_file = tmp_path / "user.env"
    env_file.write_text(
        f"BACKEND_ENDPOINT={str(server.make_url('')).rstrip('/')}\nBACKEND_ENDPOINT_TYPE=api\n"
        "BACKEND_ACCESS_KEY=AKIAFAKEFAKEFAKE\nBACKEND_SECRET_KEY=fake-secret\n"
        "BAI_IMAGE=cr.backend.ai/stable/python:3.12-ubuntu22.04\n"
    )
    try:
        yield fake, env_file
    finally:
        loop.run(server.close())


def unclosed_http_sessions() -> set[int]:
    gc.collect()
    return {id(o) for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed}


def test_a_skip_for_a_missing_slot_still_closes_the_workspace(
    manager: tuple[Manager2403, Path],
) -> None:
    fake, env_file = manager
    before = unclosed_http_sessions()
    with (
        pytest.raises(pytest.skip.Exception, match="advertises no cuda.shares"),
        cluster_magics(env_file, needs_slot="cuda.shares"),
    ):
        pytest.fail("a cluster without cuda.shares must skip")
    assert fake.slot_requests == 1  # the workspace's client did open its HTTP session
    assert unclosed_http_sessions() - before == set()


def test_the_workspace_is_closed_after_the_tests_that_use_it(
    manager: tuple[Manager2403, Path],
) -> None:
    fake, env_file = manager
    before = unclosed_http_sessions()
    with cluster_magics(env_file, needs_slot="cpu") as magics:
        assert magics.workspace.run(magics.client.resources.resource_slots())["mem"] == "bytes"
        assert unclosed_http_sessions() - before != set()  # open while the tests run
    assert fake.slot_requests == 2
    assert unclosed_http_sessions() - before == set()
