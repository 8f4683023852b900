"""Whole notebooks through nbclient, and interactive behaviours, on the local endpoint."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from .conftest import LOCAL, ignore_third_party_leftovers, kernel_env

pytestmark = [
    pytest.mark.timeout(180),
    # nbclient leaves its private event loop and sockets to the garbage collector.
    ignore_third_party_leftovers,
]


def notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {
        "name": "backendai-python",
        "display_name": "x",
        "language": "python",
    }
    return nb


def execute(nb: nbformat.NotebookNode, **kw: Any) -> nbformat.NotebookNode:
    with kernel_env(LOCAL):
        NotebookClient(nb, timeout=120, kernel_name="backendai-python", **kw).execute()
    return nb


def test_rich_outputs_render_as_in_a_local_kernel() -> None:
    nb = execute(
        notebook(
            "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()",
            "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})",
            "from IPython.display import Markdown, Latex, display\n"
            "display(Markdown('# Title'))\nLatex(r'$\\alpha^2$')",
            "h = display('first', display_id=True)\nh.update('second')",
            "import sys\nfor i in range(3):\n    print(f'\\r{i}', end='')\nprint()\n"
            "print('err', file=sys.stderr)",
        )
    )
    figure, frame, md, upd, streams = (c.outputs for c in nb.cells)
    assert any("image/png" in o.get("data", {}) for o in figure)
    png = next(o for o in figure if "image/png" in o.get("data", {}))["data"]["image/png"]
    assert not png.startswith("data:")
    assert frame[0].output_type == "execute_result" and "<table" in frame[0].data["text/html"]
    assert frame[0].execution_count == nb.cells[1].execution_count == 2
    assert md[0].data["text/markdown"] == "# Title" and md[1].data["text/latex"] == r"$\alpha^2$"
    # nbclient applies update_display_data to the output it names.
    assert upd[0].data["text/plain"] == "'second'"
    text = "".join(o.text for o in streams if o.output_type == "stream" and o.name == "stdout")
    assert text.endswith("2\n")
    assert any(o.output_type == "stream" and o.name == "stderr" for o in streams)


def test_an_error_stops_run_all() -> None:
    nb = notebook("x = 1", "raise RuntimeError('stop here')", "y = 2")
    with pytest.raises(CellExecutionError) as info:
        execute(nb)
    assert "RuntimeError" in str(info.value) and "stop here" in str(info.value)
    assert nb.cells[1].outputs[0].output_type == "error"
    assert nb.cells[1].outputs[0].ename == "RuntimeError"
    assert nb.cells[2].outputs == [] and nb.cells[2].execution_count is None


def test_input_without_stdin_is_stdin_not_implemented() -> None:
    # ipykernel's own exception, caught by name as libraries do; no prompt is shown
    code = (
        "from IPython.core.error import StdinNotImplementedError\n"
        "try:\n    input('name? ')\nexcept StdinNotImplementedError as e:\n    print('NI:', e)"
    )
    nb = execute(notebook(code))
    out = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert out == "NI: raw_input was called, but this frontend does not support input requests.\n"


def test_big_output() -> None:
    nb = execute(notebook("print('x' * (20 * 1024 * 1024))"))
    text = "".join(o.text for o in nb.cells[0].outputs if o.output_type == "stream")
    assert len(text) == 20 * 1024 * 1024 + 1


@pytest.fixture
def kernel() -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    with kernel_env(LOCAL):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def _run(kc: BlockingKernelClient, code: str, stdin: str | None = None) -> dict[str, Any]:
    msg_id = kc.execute(code, allow_stdin=stdin is not None)
    while True:
        if stdin is not None:
            try:
                request = kc.get_stdin_msg(timeout=0.05)
                assert request["content"]["password"] is ("pass" in request["content"]["prompt"])
                kc.input(stdin)
            except queue.Empty:
                pass
        try:
            reply = kc.get_shell_msg(timeout=0.05)
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]  # type: ignore[no-any-return]


def test_input_getpass_interrupt_restart(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    km, kc = kernel
    assert _run(kc, "value = 41")["status"] == "ok"
    assert _run(kc, "answer = input('name? ')", stdin="Ada")["status"] == "ok"
    assert (
        _run(kc, "import getpass\nsecret = getpass.getpass('pass? ')", stdin="s3")["status"] == "ok"
    )
    reply = kc.execute_interactive("print(answer, secret, value + 1)", timeout=30)
    assert reply["content"]["status"] == "ok"

    timer = threading.Timer(1.0, km.interrupt_kernel)
    timer.start()
    t0 = time.monotonic()
    reply = kc.execute_interactive("import time\ntime.sleep(60)", timeout=30)
    took = time.monotonic() - t0
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert took < 1.0 + 2.0
    # The session is still usable after the interrupt.
    assert kc.execute_interactive("value", timeout=30)["content"]["status"] == "ok"

    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=60)
    reply = kc.execute_interactive("value", timeout=60)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "NameError"


def test_kept_session_is_found_again_after_restart() -> None:
    keep = {
        **LOCAL,
        "BACKEND_KEEP_SESSION": "true",
        "JPY_SESSION_NAME": f"/nb/keep-{time.time()}.ipynb",
    }
    with kernel_env(keep):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        assert kc.execute_interactive("kept_value = 7", timeout=60)["content"]["status"] == "ok"
        with kernel_env(keep):
            km.restart_kernel(now=False)
        kc.wait_for_ready(timeout=60)
        texts: list[str] = []
        reply = kc.execute_interactive(
            "print(kept_value)",
            timeout=60,
            output_hook=lambda m: texts.append(str(m["content"].get("text", ""))),
        )
        assert reply["content"]["status"] == "ok" and "7\n" in texts
        # The restarted kernel counts from 1 again; so does the kept session's In/Out (issue 14).
        assert reply["content"]["execution_count"] == 1
        reply = kc.execute_interactive("len(In), Out.get(1, 'none')", timeout=60)
        assert reply["content"]["execution_count"] == 2
        results: list[str] = []
        got = kc.execute_interactive(
            "_2",
            timeout=60,
            output_hook=lambda m: m["msg_type"] == "execute_result"
            and results.append(m["content"]["data"]["text/plain"]),
        )
        assert got["content"]["status"] == "ok" and results == ["(3, 'none')"]
    finally:
        kc.execute_interactive("%backendai kernel stop", timeout=30)
        time.sleep(1)
        kc.stop_channels()
        km.shutdown_kernel(now=False)
