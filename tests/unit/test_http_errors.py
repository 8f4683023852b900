"""Transport failures against small real HTTP servers: the one I/O seam maps every failure to our
exception tree with a one-line message (no aiohttp exception escapes)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from backendai_jupyter.client import (
    Client,
    ClientConfig,
    ConnectError,
    ProtocolError,
    RequestTimeout,
    ServerError,
    parse_endpoints,
)

VERSION = {"version": "v9.20250722", "manager": "test"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(*urls: str, **kw: object) -> ClientConfig:
    return ClientConfig(
        endpoints=parse_endpoints(",".join(urls)),
        access_key="AK",
        secret_key="SK-secret",
        **kw,  # type: ignore[arg-type]
    )


async def start(handler: web.RequestHandler | None = None) -> TestServer:
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.json_response(VERSION)

    app.router.add_get("/", hello)
    if handler is not None:
        app.router.add_route("*", "/session/{name}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest_asyncio.fixture
async def servers() -> AsyncIterator[list[TestServer]]:
    started: list[TestServer] = []
    yield started
    for s in started:
        await s.close()


def url_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


async def test_problem_json_500(servers: list[TestServer]) -> None:
    async def handler(request: web.Request) -> web.Response:
        body = {
            "type": "https://api.backend.ai/probs/internal-server-error",
            "title": "Boom",
            "msg": "agent exploded",
        }
        return web.Response(
            status=500, text=json.dumps(body), content_type="application/problem+json"
        )

    servers.append(await start(handler))
    async with Client(config(url_of(servers[0]))) as c:
        with pytest.raises(ServerError) as info:
            await c.sessions.info("x")
    assert str(info.value) == "[500] GET /session/x: Boom (agent exploded) [internal-server-error]"


async def test_html_502_from_a_proxy(servers: list[TestServer]) -> None:
    async def handler(request: web.Request) -> web.Response:
        page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
        return web.Response(status=502, text=page, content_type="text/html")

    servers.append(await start(handler))
    async with Client(config(url_of(servers[0]))) as c:
        with pytest.raises(ServerError) as info:
            await c.sessions.info("x")
    assert "502 Bad Gateway" in str(info.value) and "\n" not in str(info.value)


async def test_unreachable_single_endpoint() -> None:
    port = free_port()
    with pytest.raises(ConnectError) as info:
        async with Client(config(f"http://127.0.0.1:{port}")):
            pass
    assert f"cannot connect to http://127.0.0.1:{port}" in str(info.value)


async def test_failover_to_second_endpoint(servers: list[TestServer]) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"status": "RUNNING"})

    servers.append(await start(handler))
    dead = f"http://127.0.0.1:{free_port()}"
    async with Client(config(dead, url_of(servers[0]))) as c:
        assert (await c.sessions.info("x"))["status"] == "RUNNING"
        assert str(c.http.endpoint) == url_of(servers[0])


async def test_every_endpoint_unreachable() -> None:
    a, b = free_port(), free_port()
    with pytest.raises(ConnectError) as info:
        async with Client(config(f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}")):
            pass
    message = str(info.value)
    assert message.startswith("none of the 2 endpoints answered")
    assert str(a) in message and str(b) in message and "\n" not in message


async def test_read_timeout(servers: list[TestServer]) -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({})

    servers.append(await start(handler))
    async with Client(config(url_of(servers[0]), read_timeout=0.3)) as c:
        with pytest.raises(RequestTimeout, match="timed out"):
            await c.sessions.info("x")


async def test_not_a_backendai_server(servers: list[TestServer]) -> None:
    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    app.router.add_get("/", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    servers.append(server)
    with pytest.raises(ProtocolError, match="expected JSON"):
        async with Client(config(url_of(server))):
            pass


async def test_signed_headers_reach_the_server(servers: list[TestServer]) -> None:
    seen: dict[str, str] = {}

    async def handler(request: web.Request) -> web.Response:
        seen.update(request.headers)
        return web.json_response({})

    servers.append(await start(handler))
    async with Client(config(url_of(servers[0]))) as c:
        await c.sessions.info("x")
    assert seen["Authorization"].startswith("BackendAI signMethod=HMAC-SHA256, credential=AK:")
    assert seen["X-BackendAI-Version"] == "v9.20250722"
    assert seen["Content-Type"] == "text/plain"
    assert "SK-secret" not in json.dumps(seen)
