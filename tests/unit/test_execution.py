"""Execution: the pure answer → events mapping, and the websocket/REST loops against a tiny real
aiohttp server that speaks the manager's execute protocol (including a stale pre-opened socket)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from backendai_jupyter.client import (
    BackendAIError,
    Client,
    ClientConfig,
    ClientError,
    ConnectError,
    ConsoleItem,
    ExecEvent,
    Finished,
    NotFoundError,
    Output,
    OutputLost,
    ProtocolError,
    Reconnecting,
    RequestTimeout,
    Resumed,
    ServerError,
    StepFinished,
    WaitingInput,
    parse_endpoints,
)
from backendai_jupyter.client.execution import events_from_result, output_tail, split_prompt
from backendai_jupyter.client.outages import Outage, OutageTooLong, backoff_delay, outage_reason


@pytest.mark.parametrize(
    "result,expected",
    [
        ({"status": "finished", "exitCode": 0, "console": [["stdout", "42\n"]]},
         [Output(ConsoleItem("stdout", "42\n")), Finished(0)]),
        ({"status": "continued", "console": []}, []),
        ({"status": "continued", "console": [["stderr", "warn"]]}, [Output(ConsoleItem("stderr", "warn"))]),
        ({"status": "waiting-input", "console": [["stdout", "hi\nname? "]], "options": {"is_password": True}},
         [Output(ConsoleItem("stdout", "hi\n")), WaitingInput("name? ", True)]),
        ({"status": "waiting-input", "console": [], "options": None}, [WaitingInput("", False)]),
        ({"status": "clean-finished", "exitCode": 0, "console": []}, [StepFinished("clean", 0)]),
        ({"status": "build-finished", "exitCode": 2, "console": []}, [StepFinished("build", 2)]),
        ({"status": "exec-timeout", "exitCode": None, "console": []}, [Finished(None, "exec-timeout")]),
        ({"status": "finished", "exitCode": 0, "console": [["media", ["image/png", "data:image/png;base64,AA=="]]]},
         [Output(ConsoleItem("media", ("image/png", "data:image/png;base64,AA=="))), Finished(0)]),
        ({"status": "finished", "exitCode": 0, "console": [["media", '{"type": "image/svg+xml", "data": "<svg/>"}']]},
         [Output(ConsoleItem("media", ("image/svg+xml", "<svg/>"))), Finished(0)]),
        ({"status": "finished", "exitCode": 0, "console": [["media", "<b>raw html</b>"]]},
         [Output(ConsoleItem("media", ("text/html", "<b>raw html</b>"))), Finished(0)]),
    ],
)
def test_events_from_result(result: dict[str, Any], expected: list[object]) -> None:
    assert events_from_result(result) == expected


@pytest.mark.parametrize(
    "result,error,text",
    [
        ({"status": "error", "msg": "BackendError: boom"}, ServerError, "BackendError: boom"),
        ({"status": "server-restarting", "msg": "bye"}, ServerError, "restarting"),
        ({"status": "weird"}, ProtocolError, "unexpected execution status"),
    ],
)
def test_events_from_result_errors(result: dict[str, Any], error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        events_from_result(result)


@pytest.mark.parametrize(
    "items,rest,prompt",
    [
        ([], [], ""),
        ([ConsoleItem("stdout", "x? ")], [], "x? "),
        ([ConsoleItem("stdout", "a\nb\nx? ")], [ConsoleItem("stdout", "a\nb\n")], "x? "),
        ([ConsoleItem("stdout", "done\n")], [ConsoleItem("stdout", "done\n")], ""),
        ([ConsoleItem("stderr", "x? ")], [ConsoleItem("stderr", "x? ")], ""),
    ],
)
def test_split_prompt(items: list[ConsoleItem], rest: list[ConsoleItem], prompt: str) -> None:
    assert split_prompt(items) == (rest, prompt)


class FakeManager:
    """Just enough of the manager's execute routes to drive the client's loops."""

    def __init__(self) -> None:
        self.ws_connections = 0
        self.close_first_n = 0
        self.codes: list[str] = []
        self.rest_bodies: list[dict[str, Any]] = []
        #: What the next REST calls do instead of answering: "503" (a manager shutting down) or
        #: "drop" (the connection is cut after the request was read).
        self.rest_faults: list[str] = []
        self.ws_restart = False
        self.pending: list[str] = []

    async def hello(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "v9.20250722", "manager": "fake"})

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws_connections += 1
        if self.close_first_n > 0:
            self.close_first_n -= 1
            await ws.close()
            return ws
        msg = await ws.receive()
        if msg.type != WSMsgType.TEXT:
            return ws
        params = json.loads(msg.data)
        self.codes.append(params["code"])
        if "input(" in params["code"]:
            await ws.send_json({"status": "waiting-input", "console": [["stdout", "q? "]],
                                "options": {"is_password": False}, "exitCode": None})
            answer = await ws.receive_str()
            await ws.send_json({"status": "finished", "console": [["stdout", answer + "\n"]], "exitCode": 0})
        elif self.ws_restart:
            await ws.send_json({"status": "continued", "console": [["stdout", "a\n"]], "exitCode": None})
            await ws.send_json({"status": "server-restarting", "msg": "Please connect again with the same run ID."})
        else:
            await ws.send_json({"status": "continued", "console": [["stdout", "a"]], "exitCode": None})
            await ws.send_json({"status": "finished", "console": [["stdout", "b"]], "exitCode": 0})
        await ws.close()
        return ws

    async def rest(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.rest_bodies.append(body)
        if body.get("code") == "pass":  # the client's probe of the run queue
            return web.json_response({"result": {"status": "finished", "exitCode": 0, "console": []}})
        if body["mode"] == "query":  # the agent takes the code before the answer can fail
            self.pending = ["a", "b"]
        if self.rest_faults:
            fault = self.rest_faults.pop(0)
            if fault == "drop":
                assert request.transport is not None
                request.transport.close()
            return web.json_response(
                {"type": "https://api.backend.ai/probs/service-unavailable", "title": "restarting"},
                status=503,
            )
        piece = self.pending.pop(0)
        status = "continued" if self.pending else "finished"
        return web.json_response({"result": {"status": status, "runId": "r1", "exitCode": 0 if status == "finished" else None,
                                             "console": [["stdout", piece]]}})


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[tuple[FakeManager, Client]]:
    manager = FakeManager()
    app = web.Application()
    app.router.add_get("/", manager.hello)
    app.router.add_get("/stream/session/{id}/execute", manager.stream)
    app.router.add_post("/session/{id}", manager.rest)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    config = ClientConfig(
        endpoints=parse_endpoints(str(server.make_url("")).rstrip("/")), access_key="AK", secret_key="SK"
    )
    async with Client(config) as client:
        yield manager, client
    await server.close()


async def collect(client: Client, code: str, transport: Any = "websocket") -> list[object]:
    run = client.sessions.execute("s1", code, transport=transport)
    events: list[object] = []
    async for ev in run:
        events.append(ev)
        if isinstance(ev, WaitingInput):
            await run.send_input("answer")
    return events


async def test_websocket_run_and_prewarm(fake: tuple[FakeManager, Client]) -> None:
    manager, client = fake
    first = await collect(client, "print(1)")
    assert first[-1] == Finished(0)
    # The next connection was opened in the background and is used by the next run.
    second = await collect(client, "print(2)")
    assert second == first
    assert manager.codes == ["print(1)", "print(2)"]
    await asyncio.sleep(0.2)  # let the background pre-open complete
    assert manager.ws_connections == 3  # two runs + the next pre-opened one


async def test_stale_prewarmed_socket_is_replaced(fake: tuple[FakeManager, Client]) -> None:
    manager, client = fake
    await collect(client, "print(1)")
    manager.close_first_n = 0
    # Make the pre-opened socket look stale: the server closes it before taking code.
    await client.sessions.warm_sockets.discard("s1")
    manager.close_first_n = 1
    client.sessions.warm_sockets.prepare("s1")
    events = await collect(client, "print(2)")
    assert events[-1] == Finished(0)
    assert manager.codes == ["print(1)", "print(2)"]  # nothing ran twice


async def test_websocket_input(fake: tuple[FakeManager, Client]) -> None:
    _, client = fake
    events = await collect(client, "input('q? ')")
    assert WaitingInput("q? ", False) in events
    assert Output(ConsoleItem("stdout", "answer\n")) in events


async def test_rest_sends_both_run_id_spellings(fake: tuple[FakeManager, Client]) -> None:
    manager, client = fake
    events = await collect(client, "print(1)", transport="rest")
    assert [e for e in events if isinstance(e, Output)] == [
        Output(ConsoleItem("stdout", "a")), Output(ConsoleItem("stdout", "b"))
    ]
    first, second = manager.rest_bodies
    # The client picks the run id (managers echo it back) and sends both spellings.
    assert first["mode"] == "query" and first["runId"] == first["run_id"] and first["runId"]
    assert second == {"mode": "continue", "runId": "r1", "run_id": "r1", "code": ""}


async def test_rest_run_resumes_after_503_and_a_cut_connection(fake: tuple[FakeManager, Client]) -> None:
    manager, client = fake
    manager.rest_faults = ["drop", "503"]
    events = await collect(client, "print(1)", transport="rest")
    outputs = [e for e in events if isinstance(e, Output)]
    assert outputs == [Output(ConsoleItem("stdout", "a")), Output(ConsoleItem("stdout", "b"))]
    reconnecting = [e for e in events if isinstance(e, Reconnecting)]
    assert [r.attempt for r in reconnecting] == [1, 2]
    assert reconnecting[0].reason == "connection lost" and reconnecting[1].reason.startswith("503")
    assert sum(isinstance(e, Resumed) for e in events) == 1
    # The cut query may have reached the agent: the code is never sent twice; the same run is
    # continued with the same run id.
    first, *rest = manager.rest_bodies
    assert first["mode"] == "query" and [b["mode"] for b in rest] == ["continue"] * 3
    assert rest[0]["run_id"] == first["run_id"]


async def test_rest_outage_longer_than_the_limit_is_a_clear_error(fake: tuple[FakeManager, Client]) -> None:
    manager, client = fake
    manager.rest_faults = ["503"] * 50
    run = client.sessions.execute("s1", "print(1)", transport="rest", outage_limit=0.3)
    seen: list[object] = []
    with pytest.raises(OutageTooLong, match="unreachable for .* gave up waiting. The session is kept"):
        async for ev in run:
            seen.append(ev)
    assert seen and all(isinstance(e, Reconnecting) for e in seen)
    manager.rest_faults = []  # the manager is back: the abandoned run drains


async def test_lost_websocket_run_says_from_where(fake: tuple[FakeManager, Client]) -> None:
    manager, client = fake
    manager.ws_restart = True
    run = client.sessions.execute("s1", "print(1)", transport="websocket")
    events = [ev async for ev in run]
    lost = [e for e in events if isinstance(e, OutputLost)]
    assert len(lost) == 1 and run.lost and not run.finished
    assert lost[0].after == "after the stdout line 'a'"
    assert "manager restarted" in lost[0].reason
    assert manager.rest_bodies[-1]["code"] == "pass"  # the bounded probe found the queue free


@pytest.mark.parametrize(
    "error,reason",
    [
        (ConnectError("refused"), "connection refused"),
        (RequestTimeout("slow"), "no answer in time"),
        (ClientError("closed"), "connection lost"),
        (ProtocolError("garbage"), None),
        (ServerError(503, title="restarting"), "503 restarting"),
        (ServerError(502), "502 bad gateway"),
        (ServerError(500, title="boom"), None),
        (NotFoundError(404), None),
    ],
)
def test_outage_reason(error: BackendAIError, reason: str | None) -> None:
    assert outage_reason(error) == reason


@pytest.mark.parametrize("attempt,delay", [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)])
def test_backoff_delay(attempt: int, delay: float) -> None:
    assert backoff_delay(attempt) == delay


def test_outage_counts_and_gives_up() -> None:
    now = [100.0]
    outage = Outage(10.0, clock=lambda: now[0])
    now[0] = 103.0
    assert outage.failed("connection refused") == Reconnecting("connection refused", 3.0, 1, 0.5)
    now[0] = 109.8
    assert outage.failed("connection refused").delay == pytest.approx(0.2)  # never past the limit
    now[0] = 110.0
    with pytest.raises(OutageTooLong, match="unreachable for 10 s"):
        outage.failed("connection refused")


@pytest.mark.parametrize(
    "events,text",
    [
        ([], "before any output arrived"),
        ([Output(ConsoleItem("stdout", "1\n2\n"))], "after the stdout line '2'"),
        ([Output(ConsoleItem("stdout", "x\n")), Output(ConsoleItem("stdout", "\n"))], "after the stdout line 'x'"),
        ([Output(ConsoleItem("media", ("image/png", "")))], "after a media output"),
        ([Output(ConsoleItem("stderr", "e" * 100))], "after the stderr line '…" + "e" * 59 + "'"),
    ],
)
def test_output_tail(events: list[ExecEvent], text: str) -> None:
    assert output_tail(events) == text
