"""One workspace in the proxy kernel: ``%backendai config set`` moves the kernel's next session and
the magics together (two local endpoints, A and B, sharing one keypair)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import start_new_kernel

from backendai_jupyter.client import Client, ClientConfig

from .conftest import kernel_env

pytestmark = [pytest.mark.timeout(240)]


def _serve(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "backendai_jupyter", "serve", "--port", "0",
         "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("export BACKEND_ENDPOINT="):
            return proc, line.strip().partition("=")[2]
    raise AssertionError("the local endpoint did not start")


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    a_dir, b_dir = tmp_path_factory.mktemp("A"), tmp_path_factory.mktemp("B")
    procs = []
    try:
        proc_a, url_a = _serve(a_dir)
        procs.append(proc_a)
        b_dir.mkdir(exist_ok=True)
        shutil.copy(a_dir / "keypair.json", b_dir / "keypair.json")  # one keypair, two endpoints
        proc_b, url_b = _serve(b_dir)
        procs.append(proc_b)
        keys = json.loads((a_dir / "keypair.json").read_text())
        yield {"A": url_a, "B": url_b, "access_key": keys["access_key"],
               "secret_key": keys["secret_key"]}
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _names(ep: dict[str, str], url: str) -> set[str]:
    async def go() -> set[str]:
        config = ClientConfig.from_env(
            {"BACKEND_ENDPOINT": url, "BACKEND_ACCESS_KEY": ep["access_key"],
             "BACKEND_SECRET_KEY": ep["secret_key"]}
        )
        async with Client(config) as client:
            items = await client.sessions.list(fields=("name", "status"))
        return {str(s["name"]) for s in items if s.get("status") not in ("TERMINATING",)}

    return asyncio.run(go())


def _run(kc: BlockingKernelClient, code: str) -> tuple[dict[str, Any], str]:
    texts: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        content = msg["content"]
        texts.append(str(content.get("text", "")))
        texts.append(str(content.get("data", {}).get("text/plain", "")))

    reply = kc.execute_interactive(code, timeout=120, output_hook=hook)
    return reply["content"], "".join(texts)


def test_config_set_moves_the_next_session_and_the_magics(endpoints: dict[str, str]) -> None:
    env: dict[str, str | None] = {"BACKEND_ENDPOINT": endpoints["A"], "BACKEND_ACCESS_KEY": endpoints["access_key"],
           "BACKEND_SECRET_KEY": endpoints["secret_key"]}
    with kernel_env(env):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        assert _run(kc, "where = 'A'")[0]["status"] == "ok"
        on_a = _names(endpoints, endpoints["A"])
        assert len(on_a) == 1 and not _names(endpoints, endpoints["B"])

        reply, text = _run(kc, f"%backendai config set endpoint={endpoints['B']} image=python")
        assert reply["status"] == "ok"
        assert "keeps its old settings" in text  # the live session on A is left alone
        reply, text = _run(kc, "%backendai kernel stop")
        assert reply["status"] == "ok" and "stopped" in text
        assert not _names(endpoints, endpoints["A"])  # the session on A is gone

        reply, _ = _run(kc, "where")  # a new session, on B: the old variables are gone
        assert reply["status"] == "error" and reply["ename"] == "NameError"
        on_b = _names(endpoints, endpoints["B"])
        assert len(on_b) == 1 and not _names(endpoints, endpoints["A"])
        reply, text = _run(kc, "%backendai ps")  # the magics reach B too
        assert reply["status"] == "ok" and on_b.pop() in text
        reply, text = _run(kc, "%backendai config")
        assert endpoints["B"] in text and "session.image" in text
        assert endpoints["secret_key"] not in text
    finally:
        _run(kc, "%backendai kernel stop")
        kc.stop_channels()
        km.shutdown_kernel(now=False)
