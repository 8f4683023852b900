"""The proxy kernel while the real cluster's manager restarts or is down (issue 12).

One kernel for the module, with ``BACKEND_OUTAGE_LIMIT=75`` so that the limit can be reached in a
bounded test. The manager is always started again in a ``finally``; the module takes about four
minutes (a restart is 12–20 s on an idle harness, up to 50 s on a loaded one).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from backendai_jupyter.client import Client, ClientConfig

from .conftest import CLUSTER_ENV, cluster_env, cluster_values, kernel_env

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CLUSTER_ENV.exists(), reason="no Backend.AI test cluster"),
]

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = Path(os.environ.get("BAI_CLUSTER_DIR", ROOT.parent / "shared" / "backendai-cluster"))
FORTY_LINES = "import time\nfor i in range(40):\n    print(i, flush=True)\n    time.sleep(0.5)\n"
OUTAGE_LIMIT = 75  # above a manager restart on a loaded machine (12–50 s seen)


def cluster(action: str, component: str = "manager") -> None:
    subprocess.run([str(CLUSTER_SH / "cluster.sh"), action, component], check=True,
                   capture_output=True, timeout=180)


@pytest.fixture(scope="module")
def kernel() -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    with kernel_env({**cluster_values(), "BACKEND_OUTAGE_LIMIT": str(OUTAGE_LIMIT)}):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def run(kc: BlockingKernelClient, code: str, timeout: float = 150) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    outputs: list[dict[str, Any]] = []
    # stop_on_error=False: a cell that ends in an error must not abort the next one.
    reply = kc.execute_interactive(
        code, timeout=timeout, output_hook=outputs.append, stop_on_error=False
    )
    return reply["content"], outputs


def stdout(outputs: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in outputs
                   if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")


def status_lines(outputs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (m["msg_type"], m["content"]["transient"]["display_id"], m["content"]["data"]["text/plain"])
        for m in outputs
        if m["msg_type"] in ("display_data", "update_display_data")
        and "Backend.AI manager" in m["content"]["data"].get("text/plain", "")
    ]


def test_manager_restart_mid_cell_keeps_output_and_state(kernel: Any) -> None:
    _, kc = kernel
    reply, _ = run(kc, "STATE = 'kept'")
    assert reply["status"] == "ok"
    restart = threading.Thread(target=lambda: (time.sleep(4), cluster("restart")))
    restart.start()
    try:
        reply, outputs = run(kc, FORTY_LINES)
    finally:
        restart.join()
        cluster("start")
    assert reply["status"] == "ok", reply
    assert stdout(outputs) == "".join(f"{i}\n" for i in range(40))  # complete, once, in order
    lines = status_lines(outputs)
    # ONE status line, updated in place, ending with the manager back.
    assert lines[0][0] == "display_data" and {t for t, _, _ in lines[1:]} == {"update_display_data"}
    assert len({display_id for _, display_id, _ in lines}) == 1
    assert "unreachable" in lines[0][2] and "retrying" in lines[0][2]
    assert "reachable again" in lines[-1][2]
    reply, outputs = run(kc, "print(STATE)")
    assert reply["status"] == "ok" and stdout(outputs) == "kept\n"


def test_manager_down_interrupt_completion_and_the_outage_limit(kernel: Any) -> None:
    km, kc = kernel
    reply, _ = run(kc, "STATE = 'kept'")  # the session exists before the manager goes away
    assert reply["status"] == "ok"
    cluster("stop")
    try:
        msg_id = kc.execute("print(STATE)", stop_on_error=False)
        seen: queue.Queue[dict[str, Any]] = queue.Queue()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") == msg_id and status_lines([msg]):
                seen.put(msg)
                break
        assert not seen.empty(), "no outage status line while the manager was down"
        # An interrupt ends the cell at once: the run cannot be reached anyway.
        interrupted_at = time.monotonic()
        km.interrupt_kernel()
        while True:
            reply = kc.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        assert time.monotonic() - interrupted_at < 3
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert "unreachable" in reply["content"]["evalue"]
        # Between cells, completion answers (empty) at once instead of waiting for the manager.
        asked_at = time.monotonic()
        kc.complete("STA", 3)
        completion = kc.get_shell_msg(timeout=10)
        assert completion["content"]["matches"] == [] and time.monotonic() - asked_at < 3
        # Past the configured limit the cell ends with a clear error; the session is kept.
        started = time.monotonic()
        reply_content, outputs = run(kc, "print(STATE)", timeout=OUTAGE_LIMIT + 60)
        assert time.monotonic() - started < OUTAGE_LIMIT + 30
        assert reply_content["status"] == "error" and reply_content["ename"] == "OutageTooLong"
        assert "manager was unreachable for" in reply_content["evalue"]
        assert "The session is kept" in reply_content["evalue"]
    finally:
        cluster("start")
    reply_content, outputs = run(kc, "print(STATE)")
    assert reply_content["status"] == "ok" and stdout(outputs) == "kept\n"


def test_session_destroyed_by_someone_else_mid_cell(kernel: Any) -> None:
    # Last in the module: it ends the module's session.
    km, kc = kernel
    assert run(kc, "pass")[0]["status"] == "ok"  # the session exists
    state = Path(os.environ["BACKENDAI_JUPYTER_STATE_DIR"])
    records = [json.loads(p.read_text()) for p in state.glob("*.json")]
    ours = [r for r in records if r.get("pid") == km.provisioner.pid]  # type: ignore[union-attr]
    assert len(ours) == 1, records
    msg_id = kc.execute(
        "import time\nwhile True:\n    print('.', flush=True)\n    time.sleep(0.5)",
        stop_on_error=False,
    )

    async def destroy(session_id: str) -> None:
        async with Client(ClientConfig.from_env(cluster_env())) as client:
            await client.sessions.destroy(session_id)

    time.sleep(3)
    destroyed_at = time.monotonic()
    asyncio.run(destroy(ours[0]["id"]))
    while True:
        reply = kc.get_shell_msg(timeout=120)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    assert time.monotonic() - destroyed_at < 60
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "SessionTerminated", reply["content"]
    assert "has ended" in reply["content"]["evalue"]
    # The next cell starts a new session (this one is not kept): its state is new.
    reply_content, outputs = run(kc, "print('STATE' in globals())")
    assert reply_content["status"] == "ok" and stdout(outputs) == "False\n"
