"""``%%backendai run`` in a Jupyter kernel: the remote output reaches the notebook through the
kernel's own renderer (iopub, with the cell's parent header): rich displays with their metadata,
comm messages with their binary buffers, and the status lines in order after the output."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from .conftest import kernel_env

pytestmark = [pytest.mark.timeout(240)]

REMOTE = """
from IPython.display import HTML, display
from ipykernel.comm import Comm
display(HTML("<b>rich</b>"), metadata={"isolated": True})
comm = Comm(target_name="probe", data={"x": 1}, buffers=[b"\\x00\\x01binary"])
print("done")
"""


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str | None]]:
    """An endpoint of this checkout's own (not the shared embedded one another process runs)."""
    data_dir = tmp_path_factory.mktemp("endpoint")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backendai_jupyter", "serve", "--port", "0",
         "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        url = next(line.strip().partition("=")[2] for line in proc.stdout
                   if line.startswith("export BACKEND_ENDPOINT="))
        keys = json.loads((data_dir / "keypair.json").read_text())
        yield {"BACKEND_ENDPOINT": url, "BACKEND_ACCESS_KEY": keys["access_key"],
               "BACKEND_SECRET_KEY": keys["secret_key"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module", params=["python3", "backendai-python"])
def kernel(
    request: pytest.FixtureRequest, endpoint: dict[str, str | None]
) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """A plain IPython kernel, and the proxy kernel (whose local cells run the magics)."""
    with kernel_env(endpoint):
        km, kc = start_new_kernel(kernel_name=request.param)
    try:
        if request.param == "python3":  # the proxy kernel loads the magics itself
            reply = kc.execute_interactive("%load_ext backendai_jupyter", timeout=60)
            assert reply["content"]["status"] == "ok"
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_run_output_goes_through_the_kernel_renderer(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    _, kc = kernel
    seen: list[dict[str, Any]] = []
    reply = kc.execute_interactive("%%backendai run --rm python\n" + REMOTE, timeout=180,
                                   output_hook=seen.append)
    assert reply["content"]["status"] == "ok", reply["content"]
    parent = reply["parent_header"]["msg_id"]
    mine = [m for m in seen if m["parent_header"].get("msg_id") == parent]
    kinds = [m["msg_type"] for m in mine]
    display = next(m for m in mine if m["msg_type"] == "display_data")
    assert display["content"]["data"]["text/html"] == "<b>rich</b>"
    assert display["content"]["metadata"] == {"isolated": True}
    opened = next(m for m in mine if m["msg_type"] == "comm_open")
    assert opened["content"]["target_name"] == "probe" and opened["content"]["data"] == {"x": 1}
    assert [bytes(b) for b in opened["buffers"]] == [b"\x00\x01binary"]
    text = [(m["content"]["name"], m["content"]["text"]) for m in mine if m["msg_type"] == "stream"]
    out = "".join(t for name, t in text if name == "stdout")
    err = "".join(t for name, t in text if name == "stderr")
    assert "done\n" in out
    assert "Execution finished (exit code 0)" in err
    assert kinds.index("display_data") < kinds.index("comm_open")
    assert err.index("is ready") < err.index("Execution finished") < err.index("destroyed")
