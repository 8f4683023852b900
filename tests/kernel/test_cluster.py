"""The proxy kernel against the real Backend.AI 26.9.6 cluster (one session for the module).

Server behaviours the kernel works around here (protocol.md §12):

* ``display(HTML(...))`` and a pandas DataFrame make the stock runner send a raw-HTML ``media``
  record that the 26.9.6 agent tries to JSON-decode: the execute call fails with 500 and the run
  queue can stay wedged. Through the rich channel these never reach the runner's mapping.
* The runner keeps one MIME type per output and drops markdown/LaTeX/JSON; errors arrive as ANSI
  text on stderr with no ename/evalue — the rich channel carries the full messages instead.
* REST continuation needs ``run_id`` on 26.9.6 (the client sends both spellings). Cells run
  over REST with the client's run id, so that they survive a manager restart
  (``test_cluster_outage.py``); output arrives in 2 s batches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from .conftest import CLUSTER_ENV, cluster_values, kernel_env

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CLUSTER_ENV.exists(), reason="no Backend.AI test cluster"),
]


@pytest.fixture(scope="module")
def kernel() -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    with kernel_env(cluster_values()):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def run(kc: BlockingKernelClient, code: str) -> tuple[dict[str, Any], list[tuple[float, str, Any]]]:
    outputs: list[tuple[float, str, Any]] = []
    t0 = time.monotonic()

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] not in ("status", "execute_input"):
            outputs.append((time.monotonic() - t0, msg["msg_type"], msg["content"]))

    reply = kc.execute_interactive(code, timeout=120, output_hook=hook)
    return reply["content"], outputs


def test_print_and_streaming(kernel: Any) -> None:
    _, kc = kernel
    reply, outs = run(kc, "print('hello from the cluster')")
    assert reply["status"] == "ok"
    # The first cell showed the session's progress from the lifecycle events, in one display.
    progress = " ".join(
        str(c.get("data", {}).get("text/plain", ""))
        for _, t, c in outs
        if t in ("display_data", "update_display_data")
    )
    for word in ("queued", "scheduled", "started", "ready in"):
        assert word in progress, progress
    assert any(t == "stream" and "hello from the cluster" in c["text"] for _, t, c in outs)
    # Runs go over REST (resumable), whose answers come every 2 s: 5 s of output span answers.
    reply, outs = run(
        kc, "import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(1)"
    )
    times = [at for at, t, c in outs if t == "stream"]
    assert reply["status"] == "ok" and len(times) >= 2
    assert times[-1] - times[0] > 1.0  # output arrived while the cell ran, not at the end


def test_error_is_structured(kernel: Any) -> None:
    _, kc = kernel
    reply, outs = run(kc, "def f():\n    return 1/0\nf()")
    assert reply["status"] == "error" and reply["ename"] == "ZeroDivisionError"
    errors = [c for _, t, c in outs if t == "error"]
    assert errors and errors[0]["evalue"] == "division by zero" and errors[0]["traceback"]


def test_image(kernel: Any) -> None:
    _, kc = kernel
    reply, outs = run(kc, "import matplotlib.pyplot as plt\nplt.plot([3, 1, 2])\nplt.show()")
    assert reply["status"] == "ok"
    images = [
        c["data"]["image/png"]
        for _, t, c in outs
        if t == "display_data" and "image/png" in c["data"]
    ]
    assert images and not images[0].startswith("data:")


def test_html_and_dataframe_render(kernel: Any) -> None:
    """Both crash the stock 26.9.6 execute path; they must render through the rich channel."""
    _, kc = kernel
    reply, outs = run(kc, "from IPython.display import HTML, display\ndisplay(HTML('<b>bold</b>'))")
    assert reply["status"] == "ok"
    assert [c["data"]["text/html"] for _, t, c in outs if t == "display_data"] == ["<b>bold</b>"]
    reply, outs = run(kc, "import pandas as pd\npd.DataFrame({'a': [1, 2]})")
    assert reply["status"] == "ok"
    results = [c for _, t, c in outs if t == "execute_result"]
    assert "<table" in results[0]["data"]["text/html"] and "text/plain" in results[0]["data"]
    # The session is not wedged afterwards.
    reply, outs = run(kc, "print('still alive')")
    assert reply["status"] == "ok"


def test_completion_and_inspection_come_from_the_session(kernel: Any) -> None:
    """Through the rich channel inside the session, on 24.03 too (whose completion route never
    answers): a remote variable is completed and inspected within seconds."""
    _, kc = kernel
    assert run(kc, "zzz_remote_total = 42")[0]["status"] == "ok"
    started = time.monotonic()
    kc.complete("zzz_remote_t", 12)
    reply = kc.get_shell_msg(timeout=30)["content"]
    assert "zzz_remote_total" in reply["matches"], reply
    kc.inspect("zzz_remote_total", 16)
    found = kc.get_shell_msg(timeout=30)["content"]
    assert found["found"] and "int" in found["data"]["text/plain"], found
    assert time.monotonic() - started < 8


def test_session_is_destroyed_at_shutdown() -> None:
    from backendai_jupyter.client import Client, ClientConfig

    with kernel_env(cluster_values()):
        km, kc = start_new_kernel(kernel_name="backendai-python")
        try:
            assert run(kc, "print(1)")[0]["status"] == "ok"
            _, outs = run(kc, "%backendai kernel status")
            name = "".join(c.get("text", "") for _, t, c in outs).split()[1]
            assert name.startswith("bjk-")
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        config = ClientConfig.from_env()

    async def live() -> list[str]:
        async with Client(config) as client:
            rows = await client.sessions.list()
            return [
                str(r.get("name"))
                for r in rows
                if r.get("status") not in ("TERMINATED", "CANCELLED")
            ]

    assert name not in asyncio.run(live())


def _texts(outs: list[tuple[float, str, Any]]) -> str:
    parts = []
    for _, _, content in outs:
        parts.append(str(content.get("text", "")))
        parts.append(str(content.get("data", {}).get("text/plain", "")))
        parts.append(str(content.get("evalue", "")))
    return "\n".join(parts)


def test_first_cell_without_an_image_runs_the_clusters_python() -> None:
    """No BACKEND_IMAGE: the kernel asks the cluster (GraphQL ``images``) and runs its newest
    Python image — on 24.03 the cluster's only one, python:3.12; 26.9.6 lists the test user no
    image (no registry is associated with its project), so the default python:3.13 runs — names
    it in the first cell's progress and the banner, and keeps it for the next session."""
    image = cluster_values()["BACKEND_IMAGE"]
    with kernel_env({**cluster_values(), "BACKEND_IMAGE": None}):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        reply, outs = run(kc, "import sys; print(sys.version_info[:2])")
        assert reply["status"] == "ok", reply
        text = _texts(outs)
        assert f"{image} (auto: " in text, text
        kc.kernel_info()
        info = kc.get_shell_msg(timeout=30)["content"]
        assert f"Image: {image}." in info["banner"]
        assert run(kc, "%backendai kernel stop")[0]["status"] == "ok"
        reply, outs = run(kc, "print(2)")
        assert reply["status"] == "ok" and f"{image} (auto:" in _texts(outs)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def test_unknown_image_names_the_closest_and_the_fix() -> None:
    image = str(cluster_values()["BACKEND_IMAGE"])
    wrong = image.rsplit(":", 1)[0] + ":3.99-nosuch"
    with kernel_env({**cluster_values(), "BACKEND_IMAGE": wrong}):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        reply, outs = run(kc, "print(1)")
        assert reply["status"] == "error"
        text = _texts(outs) + str(reply.get("evalue", ""))
        assert f"image {wrong!r} does not exist on this cluster" in text
        assert "%backendai config set image=REF" in text
        # 24.03 lists the user its images: the closest is named. 26.9.6 lists none (no registry
        # is associated with the test user's project): the error says so.
        assert f"; closest: {image}" in text or "which lists no images to this user" in text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
