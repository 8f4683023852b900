"""Streaming code execution: one async iterator of typed events for query, batch and input modes.

Two transports carry a run:

* **websocket** ``GET /stream/session/{id}/execute`` (preferred): the manager flushes output every
  0.2 s, the whole connection is one run, an ``input()`` answer is one text frame.
* **REST long-polling** ``POST /session/{id}``: ``mode: query`` then ``mode: continue`` until
  ``finished``; the manager flushes every 2 s. Every request carries the run id under both
  ``runId`` (20.03–23.x managers) and ``run_id`` (26.x reads only that one, protocol.md §12).

The mapping from one server answer to events is the pure function :func:`events_from_result`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from ._exceptions import (
    APIError,
    BackendAIError,
    ClientError,
    ConfigError,
    NotFoundError,
    ProtocolError,
    ServerError,
    SessionError,
)
from ._http import WebSocket
from ._models import ConsoleItem, ExecEvent, Finished, Output, StepFinished, WaitingInput

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["Execution", "Mode", "Transport", "WarmSockets", "events_from_result", "split_prompt"]

Mode = Literal["query", "batch"]
Transport = Literal["auto", "websocket", "rest"]

_CONTINUE_STATUSES = {"continued", "clean-finished", "build-finished"}
_REST_READ_TIMEOUT = 90.0  # the agent RPC itself times out after 30 s
_DRAIN_TIMEOUT = 60.0
_END_STATUSES = {"finished", "exec-timeout", "error", "server-restarting"}


def split_prompt(items: list[ConsoleItem]) -> tuple[list[ConsoleItem], str]:
    """Detach an ``input()`` prompt from the output that precedes a ``waiting-input``.

    The runner sends the prompt as ordinary stdout right before ``waiting-input``; a Jupyter
    front-end wants it as the ``input_request`` prompt instead. Only the text after the last
    newline of a trailing stdout item is taken.
    """
    if not items or items[-1].kind != "stdout" or not isinstance(items[-1].data, str):
        return items, ""
    head, sep, tail = items[-1].data.rpartition("\n")
    rest = list(items[:-1])
    if sep:
        rest.append(ConsoleItem("stdout", head + sep))
    return rest, tail


def events_from_result(result: dict[str, Any]) -> list[ExecEvent]:
    """Map one execute answer (REST ``result`` or one websocket frame) to events. Pure."""
    status = result.get("status")
    if status == "error":
        raise ServerError(500, title="execution failed on the server", msg=str(result.get("msg")))
    if status == "server-restarting":
        raise ServerError(503, title="the manager is restarting", msg=str(result.get("msg")))
    items = [ConsoleItem.from_json(item) for item in result.get("console") or []]
    options = result.get("options") or {}
    prompt = ""
    if status == "waiting-input":
        items, prompt = split_prompt(items)
    events: list[ExecEvent] = [Output(item) for item in items]
    exit_code = result.get("exitCode")
    if status == "waiting-input":
        is_password = bool(options.get("is_password")) if isinstance(options, dict) else False
        events.append(WaitingInput(prompt=prompt, is_password=is_password))
    elif status == "clean-finished":
        events.append(StepFinished("clean", exit_code))
    elif status == "build-finished":
        events.append(StepFinished("build", exit_code))
    elif status in ("finished", "exec-timeout"):
        events.append(Finished(exit_code, status=str(status)))
    elif status not in _CONTINUE_STATUSES:
        raise ProtocolError(f"unexpected execution status from server: {status!r}")
    return events


class _StaleSocket(Exception):
    """A pre-opened websocket was closed by the server before it carried anything."""


class WarmSockets:
    """Pre-opened execute websockets, one per session, to save a handshake per cell.

    The manager's ``/stream/session/{id}/execute`` handshake costs about as much as a trivial
    run itself (session lookup and auth before the upgrade), and a connection carries exactly one
    run. After a run finishes the next connection is opened in the background; the next
    execute uses it if it is still open, else opens a fresh one. A pre-opened socket that the
    server closed before taking any code is simply replaced, so nothing runs twice.
    """

    def __init__(self, client: Client, enabled: bool = True) -> None:
        self._client = client
        self.enabled = enabled
        self._pending: dict[str, asyncio.Task[WebSocket]] = {}

    def prepare(self, session: str) -> None:
        if not self.enabled or session in self._pending:
            return
        path = f"/stream/session/{session}/execute"
        self._pending[session] = asyncio.ensure_future(self._client.http.ws_connect(path))

    async def take(self, session: str) -> WebSocket | None:
        task = self._pending.pop(session, None)
        if task is None:
            return None
        try:
            ws = await task
        except (BackendAIError, asyncio.CancelledError):
            return None
        return None if ws.closed else ws

    async def discard(self, session: str) -> None:
        ws = await self.take(session)
        if ws is not None:
            await ws.close()

    async def close(self) -> None:
        for session in list(self._pending):
            await self.discard(session)


class Execution:
    """One run of code in a session. Iterate it for events; answer input with :meth:`send_input`.

    ::

        run = client.sessions.execute(sid, "name = input('name? ')")
        async for ev in run:
            if isinstance(ev, WaitingInput):
                await run.send_input("Ada")
    """

    def __init__(
        self,
        client: Client,
        session: str,
        code: str,
        *,
        mode: Mode = "query",
        options: dict[str, Any] | None = None,
        transport: Transport = "auto",
    ) -> None:
        if mode not in ("query", "batch"):
            raise ConfigError(f"execution mode must be 'query' or 'batch', got {mode!r}")
        if transport not in ("auto", "websocket", "rest"):
            raise ConfigError(f"transport must be auto, websocket or rest, got {transport!r}")
        self._client = client
        self.session = session
        self.code = code
        self.mode = mode
        self.options = options or {}
        self.transport = transport
        self.run_id: str | None = None
        self.exit_code: int | None = None
        self.finished = False
        self.used_transport: Literal["websocket", "rest"] | None = None
        self._input: asyncio.Queue[str] = asyncio.Queue()
        self._awaiting_input = False
        self._started = False

    def __aiter__(self) -> AsyncIterator[ExecEvent]:
        if self._started:
            raise ConfigError("an Execution can be iterated only once")
        self._started = True
        return self._run()

    async def send_input(self, text: str) -> None:
        """Answer the pending ``WaitingInput``."""
        await self._input.put(text)

    async def interrupt(self) -> None:
        """Send a keyboard interrupt to the session; the run then finishes on its own."""
        await self._client.sessions.interrupt(self.session)

    async def _next_input(self) -> str:
        if self._input.empty():
            raise ConfigError("the code is waiting for input: call send_input() before iterating")
        return self._input.get_nowait()

    async def _run(self) -> AsyncIterator[ExecEvent]:
        await self._client.connect()
        await self._client.sessions.wait_drained(self.session)
        if self.transport in ("auto", "websocket"):
            warm = self._client.sessions.warm_sockets
            ws = await warm.take(self.session)
            if ws is not None:
                try:
                    async for event in self._run_websocket(ws, stale_ok=True):
                        yield event
                    warm.prepare(self.session)
                    return
                except _StaleSocket:
                    pass  # the pre-opened socket died unused: nothing ran, use a fresh one
            try:
                ws = await self._client.http.ws_connect(f"/stream/session/{self.session}/execute")
            except (NotFoundError, ServerError) as e:
                if self.transport == "websocket" or self._is_session_gone(e):
                    raise
                ws = None
            if ws is not None:
                async for event in self._run_websocket(ws):
                    yield event
                warm.prepare(self.session)
                return
        self.used_transport = "rest"
        async for event in self._run_rest():
            yield event

    @staticmethod
    def _is_session_gone(error: APIError) -> bool:
        return isinstance(error, NotFoundError) and "session" in (error.slug + error.title).lower()

    def _finish(self, event: ExecEvent) -> None:
        if isinstance(event, Finished):
            self.exit_code = event.exit_code
            self.finished = True

    async def _run_websocket(
        self, ws: WebSocket, *, stale_ok: bool = False
    ) -> AsyncIterator[ExecEvent]:
        self.used_transport = "websocket"
        received = False
        try:
            try:
                await ws.send_json({"code": self.code, "mode": self.mode, "options": self.options})
            except ClientError:
                if stale_ok:
                    raise _StaleSocket from None
                raise
            while True:
                msg = await ws.receive()
                if msg.kind == "closed" and stale_ok and not received:
                    raise _StaleSocket
                received = True
                if msg.kind == "closed":
                    raise SessionError(
                        "the server closed the execution stream before the run finished "
                        f"(close code {msg.close_code}); the session may have died",
                        session=self.session,
                    )
                if msg.kind != "text":
                    raise ProtocolError("execution stream: unexpected binary frame")
                frame = msg.json()
                if not isinstance(frame, dict):
                    raise ProtocolError(f"execution stream: unexpected frame {frame!r:.80}")
                for event in events_from_result(frame):
                    self._finish(event)
                    yield event
                    if isinstance(event, WaitingInput):
                        await ws.send_str(await self._next_input())
                if self.finished:
                    return
        finally:
            if self.finished or not received:
                await ws.close()
            else:
                # Abandoned mid-run (cancelled, or the consumer stopped iterating). A run whose
                # results are never collected wedges the session's run queue on 26.x, so
                # interrupt it and read the stream to its end in the background.
                self._client.sessions.track_drain(self.session, self._drain_websocket(ws))

    async def _drain_websocket(self, ws: WebSocket) -> None:
        async def read_to_end() -> None:
            while True:
                msg = await ws.receive()
                if msg.kind != "text":
                    return
                frame = msg.json()
                status = frame.get("status") if isinstance(frame, dict) else None
                if status == "waiting-input":
                    await ws.send_str("")  # an input() still waiting gets an empty line
                elif status is None or status in _END_STATUSES:
                    return

        try:
            with contextlib.suppress(BackendAIError):
                await self.interrupt()
            await asyncio.wait_for(read_to_end(), _DRAIN_TIMEOUT)
        finally:
            await ws.close()

    async def _drain_rest(self) -> None:
        async def poll_to_end() -> None:
            mode = "continue"
            while True:
                result = await self._rest_call(mode, "", None)
                status = result.get("status")
                if status in _END_STATUSES:
                    return
                mode = "input" if status == "waiting-input" else "continue"

        with contextlib.suppress(BackendAIError):
            await self.interrupt()
        await asyncio.wait_for(poll_to_end(), _DRAIN_TIMEOUT)

    async def _rest_call(self, mode: str, code: str, options: dict[str, Any] | None) -> Any:
        body: dict[str, Any] = {"mode": mode, "runId": self.run_id, "run_id": self.run_id}
        body["code"] = code
        if options:
            body["options"] = options
        data = await self._client.http.json(
            "POST", f"/session/{self.session}", json=body, read_timeout=_REST_READ_TIMEOUT
        )
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(result, dict):
            raise ProtocolError(f"execute: unexpected answer {str(data)[:80]!r}")
        return result

    async def _run_rest(self) -> AsyncIterator[ExecEvent]:
        # Choosing the run id ourselves (managers echo it back) means an interrupted first
        # request can still be drained.
        self.run_id = secrets.token_hex(16)
        mode: str = self.mode
        code, options = self.code, self.options
        try:
            while True:
                try:
                    result = await self._rest_call(mode, code, options)
                except ServerError as e:
                    raise ServerError(
                        e.status,
                        type=e.type,
                        title="the server failed while running the code",
                        msg=e.msg or e.title,
                        data=e.data,
                        method=e.method,
                        url=e.url,
                    ) from None
                options = {}
                if result.get("runId") or result.get("run_id"):
                    self.run_id = str(result.get("runId") or result.get("run_id"))
                mode, code = "continue", ""
                for event in events_from_result(result):
                    self._finish(event)
                    yield event
                    if isinstance(event, WaitingInput):
                        mode, code = "input", await self._next_input()
                if self.finished:
                    return
        finally:
            if not self.finished:
                self._client.sessions.track_drain(self.session, self._drain_rest())
