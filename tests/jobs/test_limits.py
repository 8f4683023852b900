"""Slots go to cases in case order, whatever order their kernels become ready in."""

from __future__ import annotations

import asyncio

from backendai_jupyter.jobs.attached import Limits


async def test_slots_are_taken_in_case_order_and_never_more_than_max() -> None:
    limits = Limits(2, 5)
    order: list[int] = []
    running: set[int] = set()
    widest = 0

    async def case(index: int, ready_after: float) -> None:
        nonlocal widest
        await asyncio.sleep(ready_after)  # the kernel starts: later cases may be ready first
        async with limits.slot(index):
            order.append(index)
            running.add(index)
            widest = max(widest, len(running))
            await asyncio.sleep(0.01)
            running.discard(index)

    await asyncio.wait_for(
        asyncio.gather(*(case(i, d) for i, d in enumerate([0.05, 0.0, 0.03, 0.0, 0.01]))), 5)
    assert order == [0, 1, 2, 3, 4] and widest == 2


async def test_a_case_that_fails_before_its_slot_passes_its_turn() -> None:
    limits = Limits(1, 3)
    order: list[int] = []

    async def case(index: int) -> None:
        try:
            if index == 0:
                raise RuntimeError("the kernel did not start")
            async with limits.slot(index):
                order.append(index)
        except RuntimeError:
            pass
        finally:
            limits.pass_turn(index)

    await asyncio.wait_for(asyncio.gather(case(2), case(1), case(0)), 5)
    assert order == [1, 2]
