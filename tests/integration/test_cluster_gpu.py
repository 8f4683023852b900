"""GPU requests through the real 26.9.6 scheduler, with the cluster's mock CUDA devices.

``cluster.sh up`` with ``BAI_MOCK_GPUS=2`` gives the agent two devices: ``cuda.shares`` (1.0 per
device) in the default mode, ``cuda.device`` with ``BAI_MOCK_GPU_MODE=device``. The tests take
whichever slot the cluster advertises, so the same file runs in both modes. Checked here, as a
plain user: a request no agent can hold is refused before anything is created (and nothing is
left queued); a request that must wait says why while it waits; a cancelled wait destroys the
queued session; the session sees the allocation it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal

import pytest

from backendai_jupyter.client import Client, NotFoundError, ResourceRefused
from backendai_jupyter.client.scheduling import fetch_capacity
from backendai_jupyter.widgets._data import fetch_resource_options
from backendai_jupyter.workspace.allocation import PROBE, parse_probe

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
async def gpu_slot(client: Client) -> str:
    slots = await client.resources.resource_slots()
    found = [s for s in ("cuda.shares", "cuda.device") if s in slots]
    if not found:
        pytest.skip(
            f"the cluster advertises no GPU slot (its slots: {', '.join(slots)}); "
            "start it with BAI_MOCK_GPUS=2"
        )
    return found[0]


async def running(client: Client, name: str, timeout: float = 120) -> None:
    """Until ``name`` runs: a session created while the manager still counts the shares of one
    destroyed a moment ago comes back PENDING (26.9.6 frees them some seconds later)."""
    deadline = time.monotonic() + timeout
    while (await client.sessions.info(name)).status != "RUNNING":
        assert time.monotonic() < deadline, f"{name} did not start in {timeout:.0f} s"
        await asyncio.sleep(1)


async def _gone(client: Client, name: str) -> bool:
    try:
        info = await client.sessions.info(name)
    except NotFoundError:
        return True
    return info.status.upper() in ("TERMINATED", "CANCELLED", "TERMINATING")


async def test_capacity_is_the_servers(client: Client, gpu_slot: str) -> None:
    cap = await fetch_capacity(client)
    # 2 mock devices on one agent: the per-agent maximum and the free amount say 2.
    assert cap.per_agent[gpu_slot] == Decimal(2)
    assert cap.free[gpu_slot] <= Decimal(2)


async def test_impossible_request_is_refused_before_creation(
    client: Client, image: str, gpu_slot: str
) -> None:
    name = "gtest-too-big"
    t0 = time.monotonic()
    with pytest.raises(ResourceRefused) as caught:
        await client.sessions.create(
            image, name=name, resources={"cpu": "1", "mem": "1g", gpu_slot: "3"}
        )
    assert time.monotonic() - t0 < 10
    message = str(caught.value)
    assert f"{gpu_slot}=3" in message and "has 2" in message, message
    assert (caught.value.slot, caught.value.possible) == (gpu_slot, Decimal(2))
    assert await _gone(client, name)  # nothing was queued to block the others


async def test_a_gpu_slot_the_cluster_lacks_is_refused(client: Client, image: str) -> None:
    # Shares mode lacks cuda.device, device mode cuda.shares, a cluster without GPUs (24.03
    # here) both: the request is refused at once, naming the slot, instead of queueing.
    slots = await client.resources.resource_slots()
    other = next(s for s in ("cuda.device", "cuda.shares") if s not in slots)
    with pytest.raises(ResourceRefused, match=f"{other}=1 can never run: this cluster has no"):
        await client.sessions.create(image, resources={"cpu": "1", "mem": "1g", other: "1"})


async def test_allocation_visible_in_the_session(
    client: Client, image: str, gpu_slot: str
) -> None:
    amount = "0.5" if gpu_slot == "cuda.shares" else "1"
    info = await client.sessions.create(
        image, name="gtest-alloc", resources={"cpu": "1", "mem": "1g", gpu_slot: amount}
    )
    try:
        out = ""
        async for ev in client.sessions.execute(info.id, PROBE):
            out += getattr(getattr(ev, "item", None), "data", "") or ""
        facts = parse_probe(out)
        assert facts["slots"][gpu_slot] == Decimal(amount)
        assert facts["count"] == 1
        if gpu_slot == "cuda.shares":
            # 16 GiB mock devices: half a share is 8 GiB of one (CUDA_MEMORY_LIMITS). Whole
            # devices come without memory limits (seen in device mode): nothing to report.
            assert facts["memory"] == 8 * 2**30
    finally:
        await client.sessions.destroy(info.id, forced=True)


async def test_waiting_session_says_why_and_a_cancelled_wait_destroys_it(
    client: Client, image: str, gpu_slot: str
) -> None:
    holder = await client.sessions.create(
        image, name="gtest-holder", resources={"cpu": "1", "mem": "1g", gpu_slot: "2"}
    )
    await running(client, holder.id)
    said: list[str] = []
    waiter = asyncio.ensure_future(
        client.sessions.create(
            image, name="gtest-waiter", resources={"cpu": "1", "mem": "1g", gpu_slot: "1"},
            on_wait=said.append,
        )
    )
    try:
        for _ in range(40):
            if said:
                break
            await asyncio.sleep(0.5)
        assert said, "no wait reason within 20 s"
        assert said[-1].startswith(f"waiting for 1 {gpu_slot}: 0 free"), said
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await _gone(client, "gtest-waiter")
    finally:
        waiter.cancel()
        await client.sessions.destroy(holder.id, forced=True)
        if not await _gone(client, "gtest-waiter"):
            await client.sessions.destroy("gtest-waiter", forced=True)


async def test_picker_offers_the_gpu_slot(client: Client, gpu_slot: str) -> None:
    options = await fetch_resource_options(client)
    specs = {s.name: s for s in options.specs}
    assert gpu_slot in specs and not {"cuda.shares", "cuda.device"} - {gpu_slot} & set(specs)
    spec = specs[gpu_slot]
    # What is free now (other sessions on this shared cluster may hold some), never more than
    # the one agent's 2 devices.
    assert 0.0 <= spec.maximum <= 2.0
    assert spec.kind == ("float" if gpu_slot == "cuda.shares" else "int")


async def test_more_cpu_than_any_agent_is_refused_or_explained(client: Client, image: str) -> None:
    # No GPU needed. 26.x tells any user the largest agent: refused before creation. 24.03 does
    # not: the session queues, and the wait shows the scheduler's own words (statusData) until
    # the caller gives up, which destroys it.
    name, said = "gtest-cpu-hog", []
    create = client.sessions.create(
        image, name=name, resources={"cpu": "64", "mem": "1g"}, on_wait=said.append)
    if (await fetch_capacity(client)).per_agent:
        with pytest.raises(ResourceRefused, match="cpu=64 can never run: the largest agent"):
            await create
        return
    waiter = asyncio.ensure_future(create)
    try:
        for _ in range(40):
            if said:
                break
            await asyncio.sleep(0.5)
        assert said and said[-1].startswith("waiting for 64 cpu: "), said
        assert "manager: Could not find a contiguous resource region" in said[-1], said
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    assert await _gone(client, name)
