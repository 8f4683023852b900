"""A run started while the manager is down, with the session's background collector still
running: it must say so at once (``Reconnecting``), not wait out the collector's interrupts and
its drain silently first (issue: no outage status line on the real cluster for over a minute).
A tiny real aiohttp server plays the manager, and is then shut down (connections refused)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from backendai_jupyter.client import Client, ClientConfig, Reconnecting, parse_endpoints
from backendai_jupyter.client.outages import OutageTooLong


async def _rest(request: web.Request) -> web.Response:
    await request.json()
    await asyncio.sleep(0.1)  # a collector's run: the threads it waits for never end
    result = {"status": "continued", "runId": "r1", "exitCode": None, "console": []}
    return web.json_response({"result": result}, dumps=json.dumps)


async def _hello(request: web.Request) -> web.Response:
    return web.json_response({"version": "v9.20250722", "manager": "fake"})


async def _interrupt(request: web.Request) -> web.Response:
    return web.Response(status=204)


@pytest_asyncio.fixture
async def collecting() -> AsyncIterator[tuple[TestServer, Client]]:
    app = web.Application()
    app.router.add_get("/", _hello)
    app.router.add_post("/session/{id}", _rest)
    app.router.add_post("/session/{id}/interrupt", _interrupt)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    config = ClientConfig(endpoints=parse_endpoints(url), access_key="AK", secret_key="SK")
    async with Client(config) as client:
        await client.connect()
        collector = client.sessions.execute("s1", "collect()", transport="rest", collector=True)

        async def consume() -> None:
            async for _ in collector:
                pass

        task = asyncio.ensure_future(consume())
        client.sessions.track_collector("s1", task)
        await asyncio.sleep(0.5)  # the collector's run is going on
        await server.close()  # the manager is gone: every connect is refused
        yield server, client


async def first_event(client: Client, limit: float) -> tuple[object, float]:
    started = time.monotonic()
    run = client.sessions.execute("s1", "print(STATE)", transport="rest", outage_limit=limit)
    events = run.__aiter__()
    try:
        return await asyncio.wait_for(events.__anext__(), 8), time.monotonic() - started
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def test_outage_is_reported_while_waiting_for_the_collector(
    collecting: tuple[TestServer, Client],
) -> None:
    _, client = collecting
    event, took = await first_event(client, 75)
    assert isinstance(event, Reconnecting) and event.reason == "connection refused"
    assert took < 3  # not after the collector's 10 s of interrupts and its 60 s drain


async def test_outage_limit_counts_while_waiting_for_the_collector(
    collecting: tuple[TestServer, Client],
) -> None:
    _, client = collecting
    started = time.monotonic()
    run = client.sessions.execute("s1", "print(STATE)", transport="rest", outage_limit=3)
    with pytest.raises(OutageTooLong, match="unreachable for"):
        async for event in run:
            assert isinstance(event, Reconnecting)
    assert time.monotonic() - started < 8
