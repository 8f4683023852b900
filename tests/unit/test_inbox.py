"""The loop's :class:`Inbox`: what work on the background loop posts is handled in the thread
that waits for it, in order, and the wait ends with the work (no polling interval)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from backendai_jupyter.workspace.loop import BackgroundLoop, Inbox


@pytest.fixture
def bg() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop(name="inbox-test")
    yield loop
    loop.close()


def test_items_are_handled_here_in_order(bg: BackgroundLoop) -> None:
    seen: list[tuple[int, str]] = []
    inbox: Inbox[int] = Inbox(lambda n: seen.append((n, threading.current_thread().name)))

    async def work(post: Callable[[int], None]) -> str:
        for n in range(5):
            post(n)
            await asyncio.sleep(0)
        return "done"

    assert bg.run(work(inbox.post), inbox=inbox) == "done"
    assert seen == [(n, threading.current_thread().name) for n in range(5)]


def test_the_work_s_error_is_raised_after_its_items(bg: BackgroundLoop) -> None:
    seen: list[str] = []
    inbox: Inbox[str] = Inbox(seen.append)

    async def work() -> None:
        inbox.post("before")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        bg.run(work(), inbox=inbox)
    assert seen == ["before"]


def test_serve_times_out_and_can_wait_again(bg: BackgroundLoop) -> None:
    inbox: Inbox[None] = Inbox(lambda _: None)
    release = asyncio.Event()

    async def work() -> int:
        await release.wait()
        return 7

    future = bg.submit(work())
    with pytest.raises(TimeoutError):
        inbox.serve(future, 0.05)
    bg.loop.call_soon_threadsafe(release.set)
    assert inbox.serve(future, 10) == 7
