"""The client against a real Backend.AI 26.9.6 cluster: sessions and code execution."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest

from backendai_jupyter.client import (
    AuthError,
    BadRequestError,
    Client,
    ClientConfig,
    Finished,
    NotFoundError,
    Output,
    StepFinished,
    WaitingInput,
)
from backendai_jupyter.client.execution import Transport

pytestmark = pytest.mark.cluster

BOTH: list[Transport] = ["websocket", "rest"]


async def run_collect(
    client: Client, session: str, code: str, transport: Transport = "auto", answers: list[str] = ()
) -> tuple[list[tuple[float, str, object]], Finished]:
    """Run code; return (seconds since start, kind, data) per output, and the Finished event."""
    start = time.monotonic()
    outputs: list[tuple[float, str, object]] = []
    pending = list(answers)
    run = client.sessions.execute(session, code, transport=transport)
    finished = None
    async for ev in run:
        if isinstance(ev, Output):
            outputs.append((time.monotonic() - start, ev.item.kind, ev.item.data))
        elif isinstance(ev, WaitingInput):
            outputs.append((time.monotonic() - start, "prompt", ev.prompt))
            await run.send_input(pending.pop(0))
        elif isinstance(ev, Finished):
            finished = ev
    assert finished is not None
    return outputs, finished


def text_of(outputs: list[tuple[float, str, object]], kind: str = "stdout") -> str:
    return "".join(str(d) for _, k, d in outputs if k == kind)


@pytest.mark.parametrize("transport", BOTH)
async def test_print_sleep_print_streams(
    client: Client, shared_session: str, transport: Transport
) -> None:
    outputs, finished = await run_collect(
        client,
        shared_session,
        "import time\nprint('first', flush=True)\ntime.sleep(3)\nprint('second')",
        transport,
    )
    assert finished.exit_code == 0
    stdout = [(t, d) for t, k, d in outputs if k == "stdout"]
    assert "".join(str(d) for _, d in stdout) == "first\nsecond\n"
    first_at = next(t for t, d in stdout if "first" in str(d))
    second_at = next(t for t, d in stdout if "second" in str(d))
    assert len(stdout) == 2, "output must arrive in two pieces"
    if transport == "websocket":
        assert second_at - first_at > 2.0
        assert first_at < 0.5, f"first output after {first_at:.2f} s"


@pytest.mark.parametrize("transport", BOTH)
async def test_error_cell(client: Client, shared_session: str, transport: Transport) -> None:
    outputs, finished = await run_collect(client, shared_session, "1/0", transport)
    # The 24.03 runner reports exitCode 0 for a query cell that raised (26.9.6: 1); the
    # traceback on stderr is the same.
    assert finished.exit_code == (1 if client.features.version >= (9, "20250722") else 0)
    assert "ZeroDivisionError" in text_of(outputs, "stderr")


@pytest.mark.parametrize("transport", BOTH)
async def test_input_roundtrip(client: Client, shared_session: str, transport: Transport) -> None:
    outputs, finished = await run_collect(
        client, shared_session, "name = input('who? ')\nprint('hello', name)", transport, ["Ada"]
    )
    assert finished.exit_code == 0
    assert ("prompt", "who? ") in [(k, d) for _, k, d in outputs]
    assert "hello Ada" in text_of(outputs)


async def test_interrupt_sleeping_cell(client: Client, shared_session: str) -> None:
    run = client.sessions.execute(shared_session, "import time; time.sleep(60)")
    started = time.monotonic()
    stderr = ""
    finished = None

    async def interrupt_soon() -> None:
        await asyncio.sleep(1.0)
        await run.interrupt()

    task = asyncio.create_task(interrupt_soon())
    async for ev in run:
        if isinstance(ev, Output) and ev.item.kind == "stderr":
            stderr += str(ev.item.data)
        if isinstance(ev, Finished):
            finished = ev
    await task
    assert finished is not None
    assert time.monotonic() - started < 10
    assert "KeyboardInterrupt" in stderr
    # The session survives an interrupt.
    outputs, finished = await run_collect(client, shared_session, "print(6*7)")
    assert text_of(outputs) == "42\n"


async def test_info_list_and_logs(client: Client, shared_session: str) -> None:
    info = await client.sessions.info(shared_session)
    assert info["status"] == "RUNNING"
    listed = await client.sessions.list()
    assert shared_session in [item["id"] for item in listed]
    assert isinstance(await client.sessions.logs(shared_session), str)


async def test_batch_session(client: Client, image: str) -> None:
    info = await client.sessions.create(
        image, type="batch", startup_command="echo batch-ok; exit 0", resources={"cpu": "1"}
    )
    try:
        deadline = time.monotonic() + 60
        status = info.status
        while time.monotonic() < deadline:
            items = await client.sessions.list(
                status="TERMINATED,CANCELLED,ERROR,RUNNING,PENDING,PREPARING,PULLING,CREATING,SCHEDULED,PREPARED,TERMINATING"
            )
            match = [i for i in items if i["id"] == info.id]
            status = match[0]["status"] if match else status
            if status == "TERMINATED":
                assert match[0]["result"] == "SUCCESS"
                break
            await asyncio.sleep(2)
        assert status == "TERMINATED"
    finally:
        try:
            await client.sessions.destroy(info.id)
        except NotFoundError:
            pass


async def test_two_concurrent_sessions(client: Client, image: str) -> None:
    a, b = await asyncio.gather(
        client.sessions.create(image, resources={"cpu": "1"}),
        client.sessions.create(image, resources={"cpu": "1"}),
    )
    try:
        await asyncio.gather(
            run_collect(client, a.id, "x = 'A'"), run_collect(client, b.id, "x = 'B'")
        )
        (oa, _), (ob, _) = await asyncio.gather(
            run_collect(client, a.id, "print(x)"), run_collect(client, b.id, "print(x)")
        )
        assert (text_of(oa), text_of(ob)) == ("A\n", "B\n")
    finally:
        await asyncio.gather(client.sessions.destroy(a.id), client.sessions.destroy(b.id))
    # Destroy is asynchronous: TERMINATING for a few seconds, then gone from the live list.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        live = [i["id"] for i in await client.sessions.list()]
        if a.id not in live and b.id not in live:
            break
        await asyncio.sleep(1)
    assert a.id not in live and b.id not in live


async def test_batch_mode_is_not_required_for_steps(client: Client, shared_session: str) -> None:
    # StepFinished appears only in batch mode; query mode never yields it.
    run = client.sessions.execute(shared_session, "pass")
    kinds = [type(ev) async for ev in run]
    assert StepFinished not in kinds and kinds[-1] is Finished


# -- bad input against the real server -----------------------------------------------------------


async def test_wrong_secret_key(cluster_config: ClientConfig) -> None:
    async with Client(cluster_config.with_(secret_key="not-the-secret")) as bad:
        with pytest.raises(AuthError) as info:
            await bad.sessions.info("anything")
    message = str(info.value)
    assert info.value.status == 401 and "\n" not in message
    assert "not-the-secret" not in message


async def test_clock_skew(cluster_config: ClientConfig) -> None:
    def skewed() -> datetime:
        return datetime.now(timezone.utc) - timedelta(minutes=20)

    async with Client(cluster_config, clock=skewed) as bad:
        with pytest.raises(BadRequestError) as info:
            await bad.sessions.info("anything")
    assert info.value.status == 400
    assert "Date/time sync error" in str(info.value)


async def test_unknown_session(client: Client) -> None:
    with pytest.raises(NotFoundError) as info:
        await client.sessions.info("no-such-session-xyz")
    assert info.value.status == 404 and "\n" not in str(info.value)


@pytest.mark.parametrize("transport", BOTH)
async def test_abandoned_run_does_not_wedge_the_session(
    client: Client, shared_session: str, transport: Transport
) -> None:
    # 26.9.6: a run whose results are never collected blocks every later run of the session.
    # The client interrupts and drains an abandoned run in the background.
    run = client.sessions.execute(
        shared_session, "import time\nprint('go', flush=True)\ntime.sleep(30)", transport=transport
    )
    async for ev in run:
        if isinstance(ev, Output):
            break
    started = time.monotonic()
    outputs, finished = await run_collect(client, shared_session, "print('next')")
    assert text_of(outputs) == "next\n" and finished.exit_code == 0
    assert time.monotonic() - started < 15


async def test_completion_route_answers_without_a_stall(client: Client, shared_session: str) -> None:
    # 26.9.6's stock runner answers an empty list; 24.03's never answers (its manager gives up
    # with a 500 after 10 s), so the client does not ask there: the same answer, at once.
    started = time.monotonic()
    assert await client.sessions.complete(shared_session, "pri", row=0, col=3, line="pri") == []
    assert time.monotonic() - started < 5
