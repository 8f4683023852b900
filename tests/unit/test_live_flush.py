"""The REST loop and the live-output pump's prompts (richchannel/remote/live.py), against a tiny
real aiohttp server that answers like a stock manager whose session runs the pump."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from backendai_jupyter.client import (
    Client,
    ClientConfig,
    Finished,
    Output,
    Reconnecting,
    WaitingInput,
    parse_endpoints,
)
from backendai_jupyter.richchannel.remote.live import flush_token

PREFIX = "\x1b]BAIF;" + "N" * 22 + ";"
F1, B2 = flush_token(PREFIX, "f", 1), flush_token(PREFIX, "b", 2)


class PumpedManager:
    """Answers a query with: output + a flush prompt, then (after the flush answer) a real
    input() prompt, then (after that answer) a background report, then the end."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.drop_next_input = False

    async def hello(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "v9.20250722", "manager": "fake"})

    async def rest(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        mode, code = body["mode"], body["code"]
        if mode == "input" and code == F1 and self.drop_next_input:
            self.drop_next_input = False  # the manager went away after reading the answer
            assert request.transport is not None
            request.transport.close()
        if mode == "query":
            return self.answer("waiting-input", "line 1\n\r 50%" + F1)
        if mode == "input" and code == F1:
            return self.answer("waiting-input", "name? ", {"is_password": False})
        if mode == "input" and code == "Ada":
            return self.answer("waiting-input", "hi Ada\n" + B2)
        if mode == "input" and code == B2:
            return self.answer("finished", "", exit_code=0)
        return self.answer("continued", "")

    @staticmethod
    def answer(status: str, text: str, options: Any = None, exit_code: Any = None) -> web.Response:
        result = {"status": status, "runId": "r1", "exitCode": exit_code, "options": options,
                  "console": [["stdout", text]] if text else []}
        return web.json_response({"result": result}, dumps=json.dumps)


@pytest_asyncio.fixture
async def pumped() -> AsyncIterator[tuple[PumpedManager, Client]]:
    manager = PumpedManager()
    app = web.Application()
    app.router.add_get("/", manager.hello)
    app.router.add_post("/session/{id}", manager.rest)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    config = ClientConfig(
        endpoints=parse_endpoints(str(server.make_url("")).rstrip("/")), access_key="AK", secret_key="SK"
    )
    async with Client(config) as client:
        client.sessions.set_flush_prefix("s1", PREFIX)
        yield manager, client
    await server.close()


async def run(client: Client) -> list[object]:
    execution = client.sessions.execute("s1", "work()", transport="rest")
    events: list[object] = []
    async for ev in execution:
        events.append(ev)
        if isinstance(ev, WaitingInput):
            await execution.send_input("Ada")
    return events


async def test_pump_prompts_are_answered_and_never_shown(pumped: tuple[PumpedManager, Client]) -> None:
    manager, client = pumped
    events = await run(client)
    # Only the user's own prompt is a WaitingInput; the text before a marker is output.
    assert [e for e in events if isinstance(e, WaitingInput)] == [WaitingInput("name? ", False)]
    text = "".join(e.item.data for e in events if isinstance(e, Output) and isinstance(e.item.data, str))
    assert text == "line 1\n\r 50%hi Ada\n" and "BAIF" not in text
    assert events[-1] == Finished(0)
    assert [(b["mode"], b["code"]) for b in manager.bodies] == [
        ("query", "work()"), ("input", F1), ("input", "Ada"), ("input", B2)]
    assert client.sessions.take_background("s1") and not client.sessions.take_background("s1")


async def test_flush_answer_is_sent_again_after_a_cut_connection(
    pumped: tuple[PumpedManager, Client],
) -> None:
    manager, client = pumped
    manager.drop_next_input = True
    events = await run(client)
    assert any(isinstance(e, Reconnecting) for e in events)
    # The answer may or may not have arrived: it is sent again (a missing one would stall the
    # run; a second copy is harmless), never turned into a "continue".
    modes = [(b["mode"], b["code"]) for b in manager.bodies]
    assert modes[:3] == [("query", "work()"), ("input", F1), ("input", F1)]
    assert events[-1] == Finished(0)


def test_no_prefix_means_a_real_prompt() -> None:
    from backendai_jupyter.client.execution import split_flush

    assert split_flush("\r 50%" + F1, None) is None
    assert split_flush("\r 50%" + F1, PREFIX) == ("\r 50%", "f", F1)
