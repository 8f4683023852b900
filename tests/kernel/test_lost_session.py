"""A kept session that someone else destroys mid-cell, on the local endpoint: the cell ends with
the reason, and the kernel does not re-create the kept session behind the user's back."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import start_new_kernel

from backendai_jupyter.client import Client, ClientConfig
from backendai_jupyter.server.local import ensure_local_endpoint

from .conftest import LOCAL, kernel_env

pytestmark = pytest.mark.timeout(180)


def run(kc: BlockingKernelClient, code: str) -> tuple[dict[str, Any], str]:
    texts: list[str] = []
    reply = kc.execute_interactive(
        code,
        timeout=90,
        stop_on_error=False,  # a cell that ends in an error must not abort the next one
        output_hook=lambda m: texts.append(str(m["content"].get("text", "")))
        if m["msg_type"] == "stream"
        else None,
    )
    return reply["content"], "".join(texts)


async def destroy(session_id: str) -> None:
    async with Client(ClientConfig.from_env(ensure_local_endpoint())) as client:
        await client.sessions.destroy(session_id)


def test_kept_session_destroyed_mid_cell_is_not_recreated_silently() -> None:
    keep = {**LOCAL, "BACKEND_KEEP_SESSION": "true", "JPY_SESSION_NAME": f"/nb/lost-{time.time()}.ipynb"}
    with kernel_env(keep):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        reply, _ = run(kc, "value = 7")
        assert reply["status"] == "ok"
        state = Path(os.environ["BACKENDAI_JUPYTER_STATE_DIR"])
        records = [json.loads(p.read_text()) for p in state.glob("*.json")]
        ours = [r for r in records if r.get("pid") == km.provisioner.pid]  # type: ignore[union-attr]
        assert len(ours) == 1 and ours[0]["keep"], records
        msg_id = kc.execute(
            "import time\nwhile True:\n    print('.', flush=True)\n    time.sleep(0.2)",
            stop_on_error=False,
        )
        time.sleep(1)
        destroyed_at = time.monotonic()
        asyncio.run(destroy(ours[0]["id"]))
        while True:
            msg = kc.get_shell_msg(timeout=60)
            if msg["parent_header"].get("msg_id") == msg_id:
                break
        assert time.monotonic() - destroyed_at < 30
        assert msg["content"]["status"] == "error" and msg["content"]["ename"] == "SessionTerminated"
        # The next cell says the kept session is gone instead of starting a new one silently...
        reply, _ = run(kc, "print(value)")
        assert reply["status"] == "error" and reply["ename"] == "SessionTerminated"
        assert "no new session was started" in reply["evalue"]
        # ... and the cell after that starts it: a new session, without the old state.
        reply, text = run(kc, "print('value' in globals())")
        assert reply["status"] == "ok" and text == "False\n"
    finally:
        kc.execute_interactive("%backendai kernel stop", timeout=30)
        kc.stop_channels()
        km.shutdown_kernel(now=False)
