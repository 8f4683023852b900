"""A client closes its aiohttp session on every path, also when its close is cancelled while it
waits for an abandoned run to drain: against a tiny real aiohttp server whose runs never end.

Before the fix a cancelled ``Client.close()`` skipped the HTTP session's close, and the drain it
left running went on sending requests on a session that only the garbage collector would end
(an "Unclosed client session" in whichever later test it happened to be collected)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from backendai_jupyter.client import Client, ClientConfig, parse_endpoints


class EndlessRuns:
    """A manager whose runs print once and then never finish (each poll waits forever)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.polling = asyncio.Event()

    async def hello(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "v8.20240315", "manager": "24.03.11"})

    async def execute(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body["mode"])
        if body["mode"] == "continue":
            self.polling.set()
            await asyncio.Event().wait()  # ends when the client goes away
        result = {"status": "continued", "runId": body["runId"], "exitCode": None,
                  "options": None, "files": [], "console": [["stdout", "working\n"]]}
        return web.json_response({"result": result})

    async def interrupt(self, request: web.Request) -> web.Response:
        self.requests.append("interrupt")
        return web.Response(status=204)


@pytest_asyncio.fixture
async def endless() -> AsyncIterator[tuple[EndlessRuns, ClientConfig]]:
    fake = EndlessRuns()
    app = web.Application()
    app.router.add_get("/", fake.hello)
    app.router.add_post("/session/{id}", fake.execute)
    app.router.add_post("/session/{id}/interrupt", fake.interrupt)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    yield fake, ClientConfig(endpoints=parse_endpoints(url), access_key="AK", secret_key="SK")
    await server.close()


def unclosed_http_sessions() -> list[aiohttp.ClientSession]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed]


async def test_a_cancelled_close_still_closes_the_http_session_and_ends_the_drain(
    endless: tuple[EndlessRuns, ClientConfig],
) -> None:
    fake, config = endless
    before = unclosed_http_sessions()
    client = Client(config)
    await client.connect()
    async for _event in client.sessions.execute("sess-1", "while True: pass"):
        break  # abandoned mid-run: the client drains it in the background
    await asyncio.wait_for(fake.polling.wait(), 10)
    closing = asyncio.ensure_future(client.close())
    await asyncio.sleep(0.2)  # close() is now waiting for the drain (up to 10 s)
    closing.cancel()
    await asyncio.gather(closing, return_exceptions=True)
    assert closing.cancelled()
    requests = len(fake.requests)
    await asyncio.sleep(0.5)
    assert len(fake.requests) == requests, fake.requests  # the drain ended with the close
    assert [s for s in unclosed_http_sessions() if s not in before] == []
