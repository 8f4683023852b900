"""A remote cell's policy (workspace.cells) as tables over a scripted session.

A real session cannot be made to vanish, wedge, ignore an interrupt or lose its manager on
demand at a chosen instant, so the session's side comes from a script here (as the execution
path's does in test_relay.py); the kernel suites run the same runner against real sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from backendai_jupyter.client import (
    APIError,
    BackendAIError,
    Reconnecting,
    Resumed,
    SessionGone,
    SessionWedged,
)
from backendai_jupyter.richchannel import Frame
from backendai_jupyter.workspace import Cell, CellRunner, Outcome, Sink
from backendai_jupyter.workspace import cells as cells_module
from backendai_jupyter.workspace.cells import outcome_reply

Script = Callable[["Scripted", Sink], Awaitable[Outcome]]


class Scripted:
    """A kernel session whose ``run`` follows a script; records what the runner asked of it."""

    def __init__(self, script: Script, *, kept: str | None = None,
                 gone: SessionGone | None = None, start: Script | None = None) -> None:
        self.script, self.kept, self.gone, self.start = script, kept, gone, start
        self.calls: list[str] = []
        self.runner: CellRunner | None = None

    async def ensure(self, progress: Callable[[str], None] | None = None) -> str:
        self.calls.append("ensure")
        if self.start is not None:
            await self.start(self, _Collect())
        return "sid"

    async def run(self, code: str, sink: Sink, **cell: Any) -> Outcome:
        self.calls.append(f"run {code} count={cell['count']}")
        return await self.script(self, sink)

    async def interrupt(self) -> None:
        self.calls.append("interrupt")

    async def check_gone(self) -> SessionGone | None:
        self.calls.append("check_gone")
        return self.gone

    async def stop(self) -> None:
        self.calls.append("stop")

    def kept_name(self) -> str | None:
        return self.kept

    async def helper(self, method: str, *args: str | int) -> dict[str, Any] | None:
        self.calls.append(f"helper {method}")
        return {"status": "ok"}


class _Collect:
    def __init__(self) -> None:
        self.shown: list[tuple[str, dict[str, Any]]] = []
        self.answer: str | None = "yes"
        self.asked = asyncio.Event()

    def publish(self, msg_type: str, content: dict[str, Any], *, metadata: Any = None,
                buffers: Any = None) -> None:
        self.shown.append((msg_type, content))

    async def ask(self, prompt: str, password: bool) -> str | None:
        self.asked.set()
        if self.answer == "never":
            await asyncio.Event().wait()
        return self.answer

    def notice(self, event: object) -> None:
        pass

    def progress(self) -> Callable[[str], None]:
        return lambda text: self.publish("display_data", {"data": {"text/plain": text}})


def reply_frame(status: str) -> Frame:
    return Frame({"t": "execute_reply", "content": {"status": status, "payload": [
        {"source": "page", "data": {"text/plain": "p"}}], "user_expressions": {"a": {}}}})


ERROR = {"ename": "ValueError", "evalue": "bad", "traceback": ["tb"]}


def ends(outcome: Outcome) -> Script:
    async def script(session: Scripted, sink: Sink) -> Outcome:
        return outcome
    return script


def raises(error: BaseException) -> Script:
    async def script(session: Scripted, sink: Sink) -> Outcome:
        raise error
    return script


def run_cells(session: Scripted, n: int = 1, sink: _Collect | None = None) -> list[Any]:
    runner = CellRunner(session)
    session.runner = runner
    sink = sink or _Collect()

    async def go() -> list[Any]:
        return [await runner.run_cell(Cell(f"c{i}", i + 1), sink) for i in range(n)]

    return [*asyncio.run(go()), sink]


# -- the reply, from what the run produced --------------------------------------------------------


@pytest.mark.parametrize(("outcome", "interrupted", "reply", "shown"), [
    (Outcome(exit_code=0), False, {"status": "ok"}, None),
    (Outcome(exit_code=0, remote_reply=reply_frame("ok")), False,
     {"status": "ok", "payload": [{"source": "page", "data": {"text/plain": "p"}}],
      "user_expressions": {"a": {}}}, None),
    # an error shown by the run: already on the page
    (Outcome(exit_code=0, error=ERROR), False, {"status": "error", **ERROR}, None),
    (Outcome(exit_code=0, error=ERROR, remote_reply=reply_frame("error")), False,
     {"status": "error", **ERROR}, None),
    # Output.capture() showed the exception and swallowed it: the remote reply says ok
    (Outcome(exit_code=0, error=ERROR, remote_reply=reply_frame("ok")), False,
     {"status": "ok"}, None),
    # plain console records: the exit code and the traceback text on stderr
    (Outcome(exit_code=1, stderr_tail="Traceback...\nKeyError: 'k'\n"), False,
     {"status": "error", "ename": "KeyError", "evalue": "'k'"}, "KeyError"),
    (Outcome(exit_code=130), False,
     {"status": "error", "ename": "RemoteError",
      "evalue": "the remote run was killed (exit code 130)"}, "RemoteError"),
    (Outcome(exit_code=0), True,
     {"status": "error", "ename": "KeyboardInterrupt", "evalue": "interrupted"},
     "KeyboardInterrupt"),
    (Outcome(exit_code=0, error=ERROR), True, {"status": "error", **ERROR}, None),
])
def test_outcome_reply(outcome: Outcome, interrupted: bool, reply: dict[str, Any],
                       shown: str | None) -> None:
    got, error = outcome_reply(outcome, 4, interrupted)
    assert got["execution_count"] == 4
    assert {k: got[k] for k in reply} == reply
    assert (error or {}).get("ename") == shown
    if error is not None:
        assert got["traceback"] == error["traceback"] == [f"{error['ename']}: {error['evalue']}"]


# -- the cell, start to reply ----------------------------------------------------------------------


@pytest.mark.parametrize(("script", "kept", "gone", "ename", "calls"), [
    (raises(SessionGone("s1", "idle timeout")), None, None, "SessionTerminated",
     ["ensure", "run c0 count=1"]),
    (raises(SessionWedged("s1 is stuck.")), None, None, "SessionWedged",
     ["ensure", "run c0 count=1"]),
    # an API error: is the session gone? Then it is forgotten (stopped) and said so
    (raises(APIError(500, title="boom")), None, SessionGone("s1", "oom"), "SessionTerminated",
     ["ensure", "run c0 count=1", "check_gone", "stop"]),
    (raises(APIError(500, title="boom")), None, None, "APIError",
     ["ensure", "run c0 count=1", "check_gone"]),
])
def test_failures_map_to_one_error(script: Script, kept: str | None, gone: SessionGone | None,
                                   ename: str, calls: list[str]) -> None:
    session = Scripted(script, kept=kept, gone=gone)
    reply, sink = run_cells(session)
    assert reply["status"] == "error" and reply["ename"] == ename
    assert sink.shown == [("error", {k: reply[k] for k in ("ename", "evalue", "traceback")})]
    assert session.calls == calls
    if ename == "SessionWedged":
        assert reply["evalue"].endswith("run %backendai kernel stop and then any cell.")


@pytest.mark.parametrize("failure", [SessionGone("keepme", "idle"), APIError(404, title="gone")])
def test_a_lost_kept_session_is_reported_by_the_next_cell(failure: BackendAIError) -> None:
    state = {"n": 0}

    async def script(session: Scripted, sink: Sink) -> Outcome:
        state["n"] += 1
        if state["n"] == 1:
            raise failure
        return Outcome(exit_code=0)

    session = Scripted(script, kept="keepme", gone=SessionGone("keepme", "idle"))
    first, second, third, _ = run_cells(session, 3)
    assert first["ename"] == "SessionTerminated"
    assert second["ename"] == "SessionTerminated" and "'keepme' has ended" in second["evalue"]
    assert third["status"] == "ok"
    assert [c for c in session.calls if c.startswith("run")] == ["run c0 count=1",
                                                                 "run c2 count=3"]


def test_a_session_that_was_not_kept_starts_again_quietly() -> None:
    state = {"n": 0}

    async def script(session: Scripted, sink: Sink) -> Outcome:
        state["n"] += 1
        if state["n"] == 1:
            raise SessionGone("tmp", "idle")
        return Outcome(exit_code=0)

    first, second, _ = run_cells(Scripted(script), 2)
    assert first["ename"] == "SessionTerminated" and second["status"] == "ok"


# -- interrupts ------------------------------------------------------------------------------------


def interrupted_then(stops: bool, outage: bool = False) -> Script:
    async def script(session: Scripted, sink: Sink) -> Outcome:
        if outage:
            sink.notice(Reconnecting("manager unreachable", 1.0, 1, 0.5))
        assert session.runner is not None
        session.runner.interrupt()
        while stops and "interrupt" not in session.calls:
            await asyncio.sleep(0)
        if not stops:
            await asyncio.Event().wait()
        return Outcome(exit_code=0)
    return script


@pytest.mark.parametrize(("script", "evalue", "calls"), [
    (interrupted_then(stops=True), "interrupted", ["interrupt"]),
    (interrupted_then(stops=False),
     "interrupted; the remote code did not stop within 0.1 s and was abandoned "
     "(it may still be running)", ["interrupt"]),
    # during an outage the interrupt could not reach the run: abandoned at once
    (interrupted_then(stops=False, outage=True),
     "interrupted; the Backend.AI manager is unreachable, so the interrupt could not reach the "
     "run; it was abandoned (it may still be running)", []),
])
def test_interrupts(monkeypatch: pytest.MonkeyPatch, script: Script, evalue: str,
                    calls: list[str]) -> None:
    monkeypatch.setattr(cells_module, "INTERRUPT_GRACE", 0.1)
    session = Scripted(script)
    reply, _ = run_cells(session)
    assert (reply["ename"], reply["evalue"]) == ("KeyboardInterrupt", evalue)
    assert [c for c in session.calls if c == "interrupt"] == calls


def test_interrupt_while_the_session_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cells_module, "INTERRUPT_GRACE", 0.1)

    async def start(session: Scripted, sink: Sink) -> Outcome:
        assert session.runner is not None
        session.runner.interrupt()
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    session = Scripted(ends(Outcome(exit_code=0)), start=start)
    reply, _ = run_cells(session)
    assert reply["evalue"] == "interrupted while the session was starting"
    assert session.calls == ["ensure", "interrupt"]  # (a no-op before the session exists)


def test_a_pending_input_is_answered_after_an_interrupt() -> None:
    answers: list[str | None] = []

    async def script(session: Scripted, sink: Sink) -> Outcome:
        asking = asyncio.ensure_future(sink.ask("name? ", False))
        await asyncio.sleep(0.01)
        assert session.runner is not None
        session.runner.interrupt()
        answers.append(await asking)  # as the remote runner gets it
        return Outcome(exit_code=0)

    sink = _Collect()
    sink.answer = "never"  # the front-end never answers
    reply, _ = run_cells(Scripted(script), sink=sink)
    assert answers == [""] and reply["ename"] == "KeyboardInterrupt"


def test_input_is_the_front_ends_answer() -> None:
    async def script(session: Scripted, sink: Sink) -> Outcome:
        assert await sink.ask("q? ", False) == "yes"
        return Outcome(exit_code=0)

    reply, _ = run_cells(Scripted(script))
    assert reply["status"] == "ok"


# -- outages, helpers, comms around the cell -------------------------------------------------------


def test_completion_answers_empty_at_once_during_an_outage() -> None:
    async def script(session: Scripted, sink: Sink) -> Outcome:
        sink.notice(Reconnecting("manager unreachable", 1.0, 1, 0.5))
        raise APIError(502, title="bad gateway")

    session = Scripted(script)
    runner = CellRunner(session)

    async def go() -> tuple[Any, Any, Any, Any]:
        await runner.run_cell(Cell("c", 1), _Collect())
        during = await runner.complete("x", 1), await runner.inspect("x", 1, 0)
        watch = cells_module._Watch(_Collect(), runner, asyncio.Event())
        watch.notice(Resumed(2.0, 1))
        return *during, await runner.complete("x", 1), runner.outage

    completion, inspection, after, outage = asyncio.run(go())
    assert completion == {"status": "ok", "matches": [], "cursor_start": 1, "cursor_end": 1,
                          "metadata": {}}
    assert inspection == {"status": "ok", "found": False, "data": {}, "metadata": {}}
    assert after == {"status": "ok"} and outage is False
    assert session.calls.count("helper do_complete") == 1


def test_the_comm_hold_surrounds_the_whole_cell() -> None:
    order: list[str] = []

    @contextlib.asynccontextmanager
    async def around() -> AsyncIterator[None]:
        order.append("held")
        yield
        order.append("released")

    async def script(session: Scripted, sink: Sink) -> Outcome:
        order.append("run")
        raise SessionGone("s", "gone")

    runner = CellRunner(Scripted(script))
    reply = asyncio.run(runner.run_cell(Cell("c", 1), _Collect(), around))
    assert order == ["held", "run", "released"] and reply["ename"] == "SessionTerminated"
