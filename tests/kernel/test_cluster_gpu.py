"""The proxy kernel asking the real 26.9.6 cluster for a GPU (mock devices, ``BAI_MOCK_GPUS=2``).

The first cell's banner names the allocation; a request no agent can hold fails the cell at once,
naming the slot and what is possible, instead of queueing forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from jupyter_client.manager import start_new_kernel

from backendai_jupyter.client import Client, ClientConfig, NotFoundError

from .conftest import CLUSTER_ENV, cluster_env, cluster_values, kernel_env

T = TypeVar("T")

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CLUSTER_ENV.exists(), reason="no Backend.AI test cluster"),
]


def _gpu_slot() -> str:
    """The GPU slot the cluster advertises (its mode is chosen at ``cluster.sh up``)."""
    slots = asyncio.run(_with_client(lambda c: c.resources.resource_slots()))
    found = [s for s in ("cuda.shares", "cuda.device") if s in slots]
    if not found:
        pytest.skip("the cluster advertises no GPU slot (start it with BAI_MOCK_GPUS=2)")
    return found[0]


def _hook(texts: list[str]) -> Callable[[dict[str, Any]], None]:
    def hook(msg: dict[str, Any]) -> None:
        content = msg["content"]
        if msg["msg_type"] in ("display_data", "update_display_data"):
            texts.append(str(content.get("data", {}).get("text/plain", "")))
        elif msg["msg_type"] == "stream":
            texts.append(content["text"])
        elif msg["msg_type"] == "error":
            texts.append(f"{content['ename']}: {content['evalue']}")

    return hook


def _first_cell(resources: str, *cells: str) -> tuple[dict[str, Any], str, float]:
    values = {**cluster_values(), "BACKEND_RESOURCES": resources}
    with kernel_env(values):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    texts: list[str] = []
    t0 = time.monotonic()
    try:
        for code in cells:
            reply = kc.execute_interactive(code, timeout=180, output_hook=_hook(texts))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    return reply["content"], "\n".join(texts), time.monotonic() - t0


async def running(client: Client, name: str, timeout: float = 120) -> None:
    """Until ``name`` runs: a session created while the manager still counts the shares of one
    destroyed a moment ago comes back PENDING (26.9.6 frees them some seconds later)."""
    deadline = time.monotonic() + timeout
    while (await client.sessions.info(name)).status != "RUNNING":
        assert time.monotonic() < deadline, f"{name} did not start in {timeout:.0f} s"
        await asyncio.sleep(1)


async def _with_client(work: Callable[[Client], Awaitable[T]]) -> T:
    env = {k: v for k, v in cluster_env().items() if k.startswith("BACKEND_")}
    async with Client(ClientConfig.from_env(env)) as client:
        return await work(client)


def test_banner_names_the_gpu_allocation() -> None:
    slot = _gpu_slot()
    amount = "0.5" if slot == "cuda.shares" else "1"
    reply, text, _ = _first_cell(f"cpu=1,mem=1g,{slot}={amount}", "print('ok')",
                                 "%backendai kernel status")
    assert reply["status"] == "ok", text
    # A share says how much of the device's memory it got; a whole device does not (device
    # mode writes no CUDA_MEMORY_LIMITS).
    allocation = f"GPU: {slot} {amount} (1 device, CUDA GPU" + (
        ", 8 GiB)" if slot == "cuda.shares" else "")
    assert f"· {allocation}" in text, text  # the banner
    assert f"output, {allocation}" in text, text  # %backendai kernel status


def test_impossible_gpu_request_fails_the_cell_at_once() -> None:
    slot = _gpu_slot()
    reply, text, took = _first_cell(f"cpu=1,mem=1g,{slot}=3", "print('never')")
    assert reply["status"] == "error"
    assert f"{slot}=3 can never run" in text and "has 2" in text, text
    assert "never" not in text.replace("can never run", "")
    assert took < 60


def test_interrupting_a_wait_destroys_the_queued_session() -> None:
    slot = _gpu_slot()

    async def hold(client: Client) -> Any:
        info = await client.sessions.create(
            cluster_env()["BAI_IMAGE"], name="gtest-kernel-holder",
            resources={"cpu": "1", "mem": "1g", slot: "2"})
        await running(client, info.id)
        return info

    holder = asyncio.run(_with_client(hold))
    values = {**cluster_values(), "BACKEND_RESOURCES": f"cpu=1,mem=1g,{slot}=1",
              "BACKEND_SESSION_NAME": "gtest-kernel-waiter"}
    with kernel_env(values):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    texts: list[str] = []
    try:
        msg_id = kc.execute("print('never')")
        hook = _hook(texts)
        deadline = time.monotonic() + 60
        while not any("waiting for 1" in t for t in texts) and time.monotonic() < deadline:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") == msg_id:
                hook(msg)
        assert any(f"waiting for 1 {slot}: 0 free" in t for t in texts), texts
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=60)
        while reply["parent_header"].get("msg_id") != msg_id:  # e.g. kernel_info's reply
            reply = kc.get_shell_msg(timeout=60)
        assert reply["content"]["status"] == "error", reply["content"]

        async def gone(client: Client) -> bool:
            # The cell ends first; the queued session is destroyed right after.
            for _ in range(30):
                found = await client.sessions.list(fields=("name", "status"))
                if not any(s.name == "gtest-kernel-waiter" and s.status != "TERMINATING"
                           for s in found):
                    return True
                await asyncio.sleep(1)
            return False

        assert asyncio.run(_with_client(gone))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

        async def tidy(client: Client) -> None:
            # A named session is kept by the kernel: end it here whatever happened.
            for name in (holder.id, "gtest-kernel-waiter"):
                with contextlib.suppress(NotFoundError):
                    await client.sessions.destroy(name, forced=True)

        asyncio.run(_with_client(tidy))
