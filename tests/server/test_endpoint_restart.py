"""The local endpoint restarted under a running cell (issue 12's faults, where they apply): its
sessions are its child processes and end with it, so the run waits out the outage, then ends
with the reason instead of hanging; a new session then works."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from yarl import URL

from backendai_jupyter.client import (
    Client,
    ClientConfig,
    Output,
    Reconnecting,
    SessionError,
    parse_endpoints,
)

from .conftest import IMAGE


async def _serve(data_dir: Path, port: int) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backendai_jupyter", "serve", "--port", str(port),
        "--data-dir", str(data_dir), "--capacity", "cpu=2",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )
    assert proc.stdout is not None
    values: dict[str, str] = {}
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line, "server exited early"
        if line.startswith("export "):
            key, _, value = line[7:].strip().partition("=")
            values[key] = value
        if "listening on" in line:
            return proc, values


async def test_endpoint_restart_mid_cell_ends_the_cell_with_the_reason(tmp_path: Path) -> None:
    proc, exports = await _serve(tmp_path, 0)
    port = URL(exports["BACKEND_ENDPOINT"]).port
    assert port is not None
    config = ClientConfig(
        endpoints=parse_endpoints(exports["BACKEND_ENDPOINT"]),
        access_key=exports["BACKEND_ACCESS_KEY"],
        secret_key=exports["BACKEND_SECRET_KEY"],
        outage_limit=60.0,
    )
    try:
        async with Client(config) as client:
            info = await client.sessions.create(IMAGE)
            run = client.sessions.execute(
                info.id, "import time\nwhile True:\n    print('.', flush=True)\n    time.sleep(0.2)"
            )
            events: list[object] = []

            async def restart() -> None:
                nonlocal proc
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 30) == 0
                await asyncio.sleep(1.0)
                proc, _ = await _serve(tmp_path, port)

            restarting: asyncio.Task[None] | None = None
            try:
                async with asyncio.timeout(90):
                    async for ev in run:
                        events.append(ev)
                        if isinstance(ev, Output) and restarting is None:
                            restarting = asyncio.ensure_future(restart())
            except SessionError as e:
                assert "has ended" in str(e) and "\n" not in str(e)
            else:
                raise AssertionError("the run ended without saying its session is gone")
            finally:
                if restarting is not None:
                    await restarting
            assert any(isinstance(e, Reconnecting) for e in events)
            # The endpoint is back: a new session runs code.
            again = await client.sessions.create(IMAGE)
            text = "".join(
                [str(e.item.data) async for e in client.sessions.execute(again.id, "print(6*7)")
                 if isinstance(e, Output)]
            )
            assert text == "42\n"
            await client.sessions.destroy(again.id)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
