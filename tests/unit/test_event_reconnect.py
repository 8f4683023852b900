"""Event streams reconnect without delivering anything twice: against a tiny real aiohttp server
that cuts the stream, answers 503 once (a manager restarting), then replays what it had sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from backendai_jupyter.client import Client, ClientConfig, parse_endpoints
from backendai_jupyter.client._sse import ServerSentEvent, encode_event
from backendai_jupyter.client.events import RecentEvents


class FlakyEvents:
    def __init__(self) -> None:
        self.connections = 0

    async def hello(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "v9.20250722", "manager": "fake"})

    async def bgtask(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        if self.connections == 2:
            return web.json_response({"title": "restarting"}, status=503)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        progress = [1, 2] if self.connections == 1 else [2, 3]  # the second stream replays "2"
        for n in progress:
            data = f'{{"current_progress": {n}, "total_progress": 3}}'
            await resp.write(encode_event(data=data, event="bgtask_updated", retry=0))
        if self.connections == 1:
            assert request.transport is not None
            request.transport.close()  # cut mid-stream
            return resp
        await resp.write(encode_event(data="{}", event="bgtask_done"))
        await resp.write(encode_event(data="{}", event="server_close"))
        return resp


@pytest_asyncio.fixture
async def flaky() -> AsyncIterator[tuple[FlakyEvents, Client]]:
    fake = FlakyEvents()
    app = web.Application()
    app.router.add_get("/", fake.hello)
    app.router.add_get("/events/background-task", fake.bgtask)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    config = ClientConfig(
        endpoints=parse_endpoints(str(server.make_url("")).rstrip("/")), access_key="AK", secret_key="SK"
    )
    async with Client(config) as client:
        yield fake, client
    await server.close()


async def test_background_task_stream_survives_a_cut_and_a_503_without_duplicates(
    flaky: tuple[FlakyEvents, Client],
) -> None:
    fake, client = flaky
    seen = [(ev.event, ev.json().get("current_progress")) async for ev in client.events.background_task("t1")]
    assert seen == [
        ("bgtask_updated", 1), ("bgtask_updated", 2), ("bgtask_updated", 3), ("bgtask_done", None)
    ]
    assert fake.connections == 3


@pytest.mark.parametrize(
    "delivered,event,replay",
    [
        ([], ServerSentEvent("a", "1"), False),
        ([ServerSentEvent("a", "1")], ServerSentEvent("a", "1"), True),
        ([ServerSentEvent("a", "1")], ServerSentEvent("a", "2"), False),
        ([ServerSentEvent("a", "1")], ServerSentEvent("b", "1"), False),
        ([ServerSentEvent("a", "1", id="7")], ServerSentEvent("a", "1", id="8"), False),
    ],
)
def test_recent_events(delivered: list[ServerSentEvent], event: ServerSentEvent, replay: bool) -> None:
    recent = RecentEvents()
    for ev in delivered:
        recent.add(ev)
    assert recent.seen(event) is replay


def test_recent_events_forgets_old_ones() -> None:
    recent = RecentEvents(size=2)
    for data in ("1", "2", "3"):
        recent.add(ServerSentEvent("a", data))
    assert not recent.seen(ServerSentEvent("a", "1")) and recent.seen(ServerSentEvent("a", "3"))
