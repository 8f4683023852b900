"""Reading an abandoned run to its end in the background, so that it does not wedge the session.

A run whose results are never collected holds the session's run queue on 26.x; an abandoned run
is interrupted and then read (websocket) or polled (REST) until it ends, for at most
:data:`DRAIN_TIMEOUT` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from ._exceptions import BackendAIError
from ._exec_results import END_STATUSES
from ._http import WebSocket
from ._models import Reconnecting, Resumed
from .outages import Outage, next_retry, outage_reason

__all__ = ["DRAIN_TIMEOUT", "PriorWait", "drain_rest", "drain_websocket"]

DRAIN_TIMEOUT = 60.0


async def _read_websocket_to_end(ws: WebSocket) -> None:
    while True:
        msg = await ws.receive()
        if msg.kind != "text":
            return
        frame = msg.json()
        status = frame.get("status") if isinstance(frame, dict) else None
        if status == "waiting-input":
            await ws.send_str("")  # an input() still waiting gets an empty line
        elif status is None or status in END_STATUSES:
            return


async def drain_websocket(ws: WebSocket, interrupt: Callable[[], Awaitable[None]]) -> None:
    """Interrupt the run, read its stream to the end, and close the socket."""
    try:
        with contextlib.suppress(BackendAIError):
            await interrupt()
        await asyncio.wait_for(_read_websocket_to_end(ws), DRAIN_TIMEOUT)
    finally:
        await ws.close()


async def _poll_rest_to_end(call: Callable[[str], Awaitable[Any]]) -> None:
    mode = "continue"
    outage: Outage | None = None
    while True:
        try:
            result = await call(mode)
        except BackendAIError as e:
            if outage_reason(e) is None:
                return
            outage, reconnecting = next_retry(e, outage, DRAIN_TIMEOUT)
            await asyncio.sleep(reconnecting.delay)
            continue
        status = result.get("status")
        if status in END_STATUSES:
            return
        mode = "input" if status == "waiting-input" else "continue"


async def drain_rest(
    call: Callable[[str], Awaitable[Any]], interrupt: Callable[[], Awaitable[None]]
) -> None:
    """Interrupt the run, then poll it (``call(mode)`` sends one request) until it ends."""
    with contextlib.suppress(BackendAIError):
        await interrupt()
    await asyncio.wait_for(_poll_rest_to_end(call), DRAIN_TIMEOUT)


class PriorWait:
    """What a run waits for before it starts (the session's collector stopped, an abandoned run
    drained), with the outage reported meanwhile.

    Both wait out a manager outage silently (the collector's interrupts fail for up to 10 s, a
    drain retries for up to :data:`DRAIN_TIMEOUT` s), so a cell started while the manager is
    down would show nothing for over a minute. While the wait lasts longer than a second, the
    manager is probed (``probe``: the unsigned ``GET /``) and the run's own outage notices are
    yielded; :attr:`outage` is the outage still going on at the end, for the run to carry on
    (its limit counts from the first failed probe).
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.outage: Outage | None = None

    async def events(
        self, work: Awaitable[None], probe: Callable[[], Awaitable[Any]]
    ) -> AsyncGenerator[Reconnecting | Resumed, None]:
        task = asyncio.ensure_future(work)
        delay = 1.0
        try:
            while not (await asyncio.wait({task}, timeout=delay))[0]:
                try:
                    await probe()
                except BackendAIError as e:
                    if outage_reason(e) is not None:  # any other answer: the manager is there
                        self.outage, reconnecting = next_retry(e, self.outage, self.limit)
                        yield reconnecting
                        delay = max(reconnecting.delay, 0.5)
                        continue
                if self.outage is not None:
                    yield Resumed(elapsed=self.outage.elapsed, attempts=self.outage.attempts)
                    self.outage = None
                delay = 1.0
            task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
