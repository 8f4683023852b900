"""GPU requests on the embedded local endpoint: a clear answer with or without GPUs.

Without ``nvidia-smi`` GPUs the client refuses before creating anything (the endpoint's
``/config/resource-slots`` has no cuda slot), and the endpoint's own answer, for a client that
skips the pre-check, is a 400 naming the slot. With GPUs (a lent GPU machine), a session asking
for one sees its device, and the kernel's allocation line names it.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from backendai_jupyter.client import BadRequestError, Client, Output, ResourceRefused
from backendai_jupyter.client.capacity import describe_allocation, parse_slot_map
from backendai_jupyter.workspace.allocation import PROBE, parse_probe

from .conftest import IMAGE


def _gpus() -> int:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    done = subprocess.run([exe, "-L"], capture_output=True, text=True, check=False)
    return len([line for line in done.stdout.splitlines() if line.startswith("GPU ")])


async def test_gpu_request_answer_names_the_slot(client: Client) -> None:
    if _gpus():
        pytest.skip("this machine has GPUs: see test_gpu_session_sees_its_device")
    slots = await client.resources.resource_slots()
    assert "cuda.shares" not in slots and "cuda.device" not in slots
    with pytest.raises(ResourceRefused, match=r"cuda.shares=0.5 can never run: this cluster has no"):
        await client.sessions.create(IMAGE, resources={"cuda.shares": "0.5"})
    with pytest.raises(BadRequestError, match=r"no cuda.device \(no GPU found by nvidia-smi\)"):
        await client.sessions.create(IMAGE, resources={"cuda.device": "1"}, precheck=False)


async def test_gpu_session_sees_its_device(client: Client) -> None:
    count = _gpus()
    if not count:
        pytest.skip("no GPU on this machine (nvidia-smi lists none)")
    with pytest.raises(ResourceRefused, match=f"cuda.device={count + 1} can never run"):
        await client.sessions.create(IMAGE, resources={"cuda.device": str(count + 1)})
    info = await client.sessions.create(IMAGE, resources={"cuda.device": "1"})
    try:
        text = ""
        async for ev in client.sessions.execute(info.id, PROBE, transport="rest"):
            if isinstance(ev, Output):
                text += ev.item.data
        facts = parse_probe(text)
        assert facts.get("count") == 1, text
        record = await client.sessions.info(info.id)
        slots = parse_slot_map(record.get("occupiedSlots") or record.get("occupied_slots"))
        assert describe_allocation(slots, facts).startswith("GPU: cuda.device 1 (1 device")
    finally:
        await client.sessions.destroy(info.id)
