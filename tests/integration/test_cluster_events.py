"""Session lifecycle events (SSE) against the real 26.9.6 cluster."""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid

import pytest

from backendai_jupyter.client import Client, NotFoundError
from backendai_jupyter.client._sse import ServerSentEvent

if not os.access(os.environ.get("BAI_CLUSTER_ENV", "/tmp/backendai-cluster/user.env"), os.R_OK):
    if os.environ.get("BAI_REQUIRE_CLUSTER") != "1":
        pytest.skip("no real cluster (user.env not readable)", allow_module_level=True)

pytestmark = [pytest.mark.cluster, pytest.mark.asyncio(loop_scope="session")]

TERMINAL = {"session_terminated", "session_cancelled"}


async def _collect(
    stream: object, out: list[ServerSentEvent], *, name: str | None = None
) -> None:
    """Append events (of session ``name`` if given) until that session reached a terminal one."""
    async for event in stream:  # type: ignore[attr-defined]
        data = event.json() if event.data else {}
        if name is not None and data.get("sessionName") != name:
            continue
        out.append(event)
        if event.event in TERMINAL:
            return


async def test_session_lifecycle_events(client: Client, image: str) -> None:
    name = f"bjt-ev-{secrets.token_hex(3)}"
    everything: list[ServerSentEvent] = []
    by_id: list[ServerSentEvent] = []
    # 26.x resolves sessionName when the stream opens (404 before the session exists), so the
    # first listener watches all of the user's sessions and filters by name here.
    all_task = asyncio.create_task(_collect(client.events.session(), everything, name=name))
    await asyncio.sleep(1.0)  # let the server register the stream before the session exists
    info = await client.sessions.create(
        image, name=name, resources={"cpu": "1", "mem": "1g"}, enqueue_only=True
    )
    id_task = asyncio.create_task(_collect(client.events.session(session_id=info.id), by_id))

    async def started() -> None:
        while not any(e.event == "session_started" for e in everything):
            if all_task.done():
                all_task.result()
                return
            await asyncio.sleep(0.2)

    try:
        await asyncio.wait_for(started(), 90)
    finally:
        await client.sessions.destroy(info.id)
    await asyncio.wait_for(asyncio.gather(all_task, id_task), 60)

    names = [e.event for e in everything]
    print("lifecycle:", names)
    # 26.9.6 announces the queued session as session_pending (22.x: session_enqueued).
    first = next((n for n in names if n in ("session_enqueued", "session_pending")), None)
    assert first is not None, names
    for expected in ("session_scheduled", "kernel_started", "session_started"):
        assert expected in names, names
    assert names.index(first) < names.index("session_scheduled") < names.index("session_started")
    assert names[-1] in TERMINAL, names
    hex_id = info.id.replace("-", "")
    assert all(e.json()["sessionId"].replace("-", "") == hex_id for e in everything)

    # The id-filtered stream (server ignores sessionId on 26.x; filtered client-side) only saw
    # this session's events and ended with the same terminal event.
    assert by_id and by_id[-1].event in TERMINAL, [e.event for e in by_id]
    assert all(e.json().get("sessionName") == name for e in by_id)


async def test_unknown_session_name_is_raised_not_retried(client: Client) -> None:
    seen: list[str] = []

    async def first() -> None:
        async for ev in client.events.session(session_name=f"nope-{secrets.token_hex(4)}"):
            seen.append(ev.event)
            break

    if client.features.version >= (9, "20250722"):
        with pytest.raises(NotFoundError):
            await asyncio.wait_for(first(), 10)
        return
    # 24.03 (API v8.20240315) accepts the stream of an unknown name (200) and keeps it open and
    # silent: nothing to raise, and no event may be invented.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(first(), 5)
    assert seen == []


async def test_background_task_unknown_id(client: Client) -> None:
    # Observed on 26.9.6: the stream of an unknown task is signed and accepted, then stays open
    # and silent (older managers answered 404). The iterator must neither fail nor invent events.
    events: list[str] = []

    async def drain() -> None:
        async for e in client.events.background_task(str(uuid.uuid4())):
            events.append(e.event)

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(drain(), 3)
    assert events == []
