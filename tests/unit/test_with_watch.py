"""``scheduling.with_watch``: who destroys a session that queued when the create call fails.

The create (``POST /session``) blocks while the session queues; a watch reports why it waits and
marks the session as seen queued. If the caller gets no session back (a cancel, or a connection
that failed while the session queued, as 24.03's manager did once in the cluster tier), a
session the watch saw must not be left queued for nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from backendai_jupyter.client import ConnectError, ServerError
from backendai_jupyter.client.scheduling import with_watch


class Calls:
    def __init__(self) -> None:
        self.destroyed = 0

    async def destroy(self) -> None:
        self.destroyed += 1


def watch_that_sees(queued: bool) -> Any:
    def watch(seen: list[bool]) -> Coroutine[Any, Any, None]:
        async def run() -> None:
            if queued:
                seen[:] = [True]
            await asyncio.sleep(3600)

        return run()

    return watch


async def post_after(delay: float, outcome: BaseException | str) -> str:
    await asyncio.sleep(delay)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


@pytest.mark.parametrize(
    ("queued", "outcome", "destroyed"),
    [
        (True, ConnectError("the server closed the connection"), 1),  # left queued: destroy
        (False, ConnectError("the server closed the connection"), 0),  # never seen: nothing
        (True, ServerError(500, title="boom"), 0),  # the server answered: not ours to guess
        (True, "created", 0),  # the session runs: the caller has it
    ],
)
async def test_a_failed_create_destroys_only_a_session_seen_queued(
    queued: bool, outcome: BaseException | str, destroyed: int
) -> None:
    calls = Calls()
    run = with_watch(post_after(0.05, outcome), watch_that_sees(queued), calls.destroy)
    if isinstance(outcome, BaseException):
        with pytest.raises(type(outcome)):
            await run
    else:
        assert await run == outcome
    assert calls.destroyed == destroyed


async def test_a_cancelled_create_destroys_a_session_seen_queued() -> None:
    calls = Calls()
    task = asyncio.ensure_future(
        with_watch(post_after(3600, "never"), watch_that_sees(True), calls.destroy)
    )
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls.destroyed == 1
