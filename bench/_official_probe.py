"""Timing probe run with the OFFICIAL Backend.AI client (``$BAI_CLIENT_VENV/bin/python``).

Prints one JSON object: per-call seconds for a trivial execute and the time to first output of a
print-then-sleep cell, over the official SDK's websocket (``stream_execute``, as ``backend.ai run``
does) and its REST request loop (``Request`` with ``run_id``, since the 26.9.6 SDK's own
``execute()`` sends ``runId``, which the 26.9.6 manager ignores). Not imported by the package.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

import aiohttp
from ai.backend.client.func.session import ComputeSession
from ai.backend.client.request import Request
from ai.backend.client.session import AsyncSession

SLEEPY = "import time\nprint('first', flush=True)\ntime.sleep(3)\nprint('second')"


async def rest(session: str, mode: str, code: str, run_id: str) -> dict:
    rq = Request("POST", f"/session/{session}")
    rq.set_json({"mode": mode, "code": code, "run_id": run_id})
    async with rq.fetch() as resp:
        return (await resp.json())["result"]


async def rest_run(session: str, code: str) -> tuple[float, float | None]:
    """Return (total seconds, seconds to first stdout) for one REST run."""
    start = time.perf_counter()
    first = None
    run_id = uuid.uuid4().hex
    result = await rest(session, "query", code, run_id)
    while True:
        if first is None and any(c[0] == "stdout" for c in result.get("console", [])):
            first = time.perf_counter() - start
        if result["status"] == "finished":
            return time.perf_counter() - start, first
        result = await rest(session, "continue", "", run_id)


async def ws_run(session: str, code: str) -> tuple[float, float | None]:
    start = time.perf_counter()
    first = None
    async with ComputeSession(session).stream_execute(code) as ws:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if first is None and any(c[0] == "stdout" for c in data.get("console", [])):
                first = time.perf_counter() - start
            if data.get("status") == "finished":
                break
    return time.perf_counter() - start, first


async def main(session: str, repeat: int, gap: float) -> None:
    out: dict[str, list[float]] = {"rest_pass": [], "ws_pass": [], "rest_ttfo": [], "ws_ttfo": []}
    async with AsyncSession():
        for _ in range(repeat):
            await asyncio.sleep(gap)
            out["ws_pass"].append((await ws_run(session, "pass"))[0])
        for _ in range(2):
            out["ws_ttfo"].append((await ws_run(session, SLEEPY))[1] or float("nan"))
        for _ in range(repeat):
            await asyncio.sleep(gap)
            out["rest_pass"].append((await rest_run(session, "pass"))[0])
        for _ in range(2):
            out["rest_ttfo"].append((await rest_run(session, SLEEPY))[1] or float("nan"))
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
