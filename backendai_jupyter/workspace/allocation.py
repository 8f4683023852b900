"""What GPU a session got: the manager's occupied slots plus what the session itself reports.

A Docker agent (and the mock-accelerator cluster) hands the allocation to the session in its
environment (``GPU_COUNT``, ``GPU_MODEL_NAME``, ``GPU_CONFIG``) and in
``/home/config/resource.txt`` (``SLOTS``, ``CUDA_MEMORY_LIMITS``); the embedded local endpoint
sets ``CUDA_VISIBLE_DEVICES``. One hidden run reads them; the parsing is pure
(:func:`~..client.capacity.session_gpu_facts`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

from ..client import BackendAIError, Client
from ..client.capacity import (
    accelerator_slots,
    describe_allocation,
    parse_slot_map,
    session_gpu_facts,
)
from .folder_upload import Answers
from .settings import SessionSettings

__all__ = ["PROBE", "parse_probe", "read_allocation", "wants_gpu"]

log = logging.getLogger(__name__)

_MARK = "__bjup_gpu__"
# Runs hidden in the session; prints one marked JSON line (no imports beyond the stdlib).
PROBE = (
    "import json as _j, os as _o\n"
    "def _bjup_gpu():\n"
    "    try:\n"
    "        with open('/home/config/resource.txt') as f: txt = f.read()\n"
    "    except OSError: txt = ''\n"
    "    keys = ('GPU_COUNT', 'N_GPUS', 'GPU_MODEL_NAME', 'GPU_CONFIG', 'CUDA_VISIBLE_DEVICES')\n"
    "    env = {k: _o.environ[k] for k in keys if k in _o.environ}\n"
    f"    print({_MARK!r} + _j.dumps({{'env': env, 'txt': txt}}))\n"
    "_bjup_gpu(); del _bjup_gpu, _j, _o\n"
)


def wants_gpu(resources: Mapping[str, Any]) -> bool:
    """Does a request name an accelerator slot (``cuda.shares``, ``cuda.device``, ...)?"""
    return bool(accelerator_slots(resources))


def parse_probe(text: str) -> dict[str, Any]:
    """The facts in :data:`PROBE`'s output (``{}`` when it printed nothing usable)."""
    for line in text.splitlines():
        if line.startswith(_MARK):
            try:
                data = json.loads(line[len(_MARK):])
            except ValueError:
                return {}
            env = data.get("env") if isinstance(data, dict) else None
            txt = data.get("txt") if isinstance(data, dict) else None
            if isinstance(env, dict) and isinstance(txt, str):
                return session_gpu_facts({str(k): str(v) for k, v in env.items()}, txt)
    return {}


async def _no_answers() -> str | None:
    return None


async def read_allocation(
    client: Client,
    session_id: str,
    settings: SessionSettings,
    run_text: Callable[[str, Answers], Awaitable[str]],
) -> str:
    """``"GPU: cuda.shares 0.5 (1 device, CUDA GPU, 8 GiB)"`` for a running session, or ``""``
    (at once when its ``settings`` ask for no accelerator).

    ``run_text`` runs code hidden in the session and returns its stdout.
    """
    if not wants_gpu(settings.resources):
        return ""
    slots: dict[str, Decimal] = {}
    try:
        info = await client.sessions.info(session_id)
        slots = parse_slot_map(info.get("occupiedSlots") or info.get("occupied_slots"))
    except BackendAIError as e:
        log.debug("no occupied slots: %s", e)
    try:
        facts = parse_probe(await run_text(PROBE, _no_answers))
    except BackendAIError as e:
        log.debug("no GPU facts from the session: %s", e)
        facts = {}
    return describe_allocation(slots, facts)
