"""A remote cell's one path (issues 17 and 18), on the local endpoint and the real cluster:
one thread hop per cell, no frame of ours in a traceback, the reply of a cell whose exception
an ``Output`` widget swallowed, and every cell's ``idle`` right after its reply under nbclient.

One kernel (one session) per endpoint for the module; the tests read only what they ran.
"""

from __future__ import annotations

import gc
import threading
import time
import warnings
from collections.abc import Iterator

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from backendai_jupyter.display.outputs import strip_ansi

from .conftest import CLUSTER_ENV, LOCAL, THIRD_PARTY_LEFTOVERS, cluster_values, kernel_env
from .test_fidelity import Kernel, run, stdout

pytestmark = pytest.mark.timeout(240)

ENDPOINTS = [
    "local",
    pytest.param(
        "cluster",
        marks=[
            pytest.mark.cluster,
            pytest.mark.skipif(not CLUSTER_ENV.exists(), reason="no Backend.AI test cluster"),
        ],
    ),
]
#: What a frame of the rich channel's remote programs would show in a traceback.
OURS = ("backendai rich channel", "_bai_install", "ask(", "guard", "Channel.", "skipping hidden")


def collect_leftovers() -> None:
    """jupyter_client's sync wrappers (start_new_kernel, interrupt_kernel) leave event loops
    and sockets to the garbage collector: collect them now, not in the middle of a test."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", THIRD_PARTY_LEFTOVERS, ResourceWarning)
        gc.collect()


def env_for(endpoint: str) -> dict[str, str | None]:
    return LOCAL if endpoint == "local" else cluster_values()


@pytest.fixture(scope="module", params=ENDPOINTS)
def kernel(request: pytest.FixtureRequest) -> Iterator[Kernel]:
    with kernel_env(env_for(request.param)):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        reply, _ = run(kc, "import time\nprint('session up')")
        assert reply["status"] == "ok", reply
        collect_leftovers()
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def hops(kc: object) -> int:
    """Thread hops the proxy made so far (read by a %%local cell, which makes none)."""
    reply, msgs = run(
        kc,  # type: ignore[arg-type]
        "%%local\nfrom backendai_jupyter.workspace import current\nprint(current().loop.hops)",
    )
    assert reply["status"] == "ok", reply
    return int(stdout(msgs))


def test_a_remote_cell_is_one_thread_hop(kernel: Kernel) -> None:
    _, kc = kernel
    before = hops(kc)
    for code in ("x = 1", "print(x)", "1/0", "from IPython.display import HTML; HTML('<b>b</b>')"):
        run(kc, code)
    assert hops(kc) - before == 4


def traceback_of(msgs: list[dict[str, object]]) -> str:
    [error] = [m for m in msgs if m["msg_type"] == "error"]
    content = error["content"]
    assert isinstance(content, dict)
    return strip_ansi("\n".join(content["traceback"]))


def test_no_frame_of_ours_in_any_traceback(kernel: Kernel) -> None:
    _, kc = kernel
    reply, msgs = run(kc, "input('name? ')", allow_stdin=False)
    text = traceback_of(msgs)
    assert reply["ename"] == "StdinNotImplementedError"
    assert "----> 1 input('name? ')" in text and not [w for w in OURS if w in text], text
    _, msgs = run(kc, "%tb")
    text = traceback_of(msgs)
    assert "input('name? ')" in text and not [w for w in OURS if w in text], text
    # an interrupt while the cell displays (inside the channel's own code, often), sent on the
    # control channel as a front-end does (km.interrupt_kernel leaves a loop in its thread)
    interrupt = kc.session.msg("interrupt_request", {})
    timer = threading.Timer(2.0, kc.control_channel.send, (interrupt,))
    timer.start()
    code = (
        "from IPython.display import display\n"
        "for i in range(100000):\n"
        "    display(i, display_id='n', update=i > 0)\n"
    )
    reply, msgs = run(kc, code)
    timer.join()
    assert reply["ename"] == "KeyboardInterrupt"
    text = traceback_of(msgs)
    assert "display(i, display_id" in text and not [w for w in OURS if w in text], text


def test_an_exception_output_capture_swallowed_leaves_the_reply_ok(kernel: Kernel) -> None:
    _, kc = kernel
    code = (
        "import ipywidgets as w\n"
        "out = w.Output()\n"
        "@out.capture()\n"
        "def f():\n"
        "    raise ValueError('caught by the widget')\n"
        "f()\n"
        "print('after')\n"
    )
    reply, msgs = run(kc, code)
    assert reply["status"] == "ok", reply
    assert stdout(msgs) == "after\n"
    # the traceback was shown (inside the widget, in a front-end), as by ipykernel
    assert "ValueError: caught by the widget" in traceback_of(msgs)
    reply, _ = run(kc, "raise ValueError('not caught')")
    assert reply["status"] == "error" and reply["evalue"] == "not caught"


WIDGET_CELLS = [
    "import ipywidgets as w\nfrom IPython.display import clear_output, display\n"
    "out = w.Output()\ndisplay(out)",
    "with out:\n    print('a')",
    "with out:\n    clear_output()\n    print('b')",
    "with out:\n    clear_output(wait=True)\n    print('c')",
    "print(1)",
    "from ipywidgets import interact\n@interact(x=5)\ndef g(x):\n    print(x * 2)",
    "print(2)",
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_idle_follows_every_reply_under_nbclient(endpoint: str) -> None:
    """nbclient waits its iopub_timeout for a cell's idle; it must never have to."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in WIDGET_CELLS])
    with kernel_env(env_for(endpoint)):
        client = NotebookClient(
            nb,
            kernel_name="backendai-python",
            timeout=180,
            iopub_timeout=4,
            raise_on_iopub_timeout=True,
            store_widget_state=True,
        )
        took = []
        with client.setup_kernel():
            for i, cell in enumerate(nb.cells):
                t0 = time.perf_counter()
                client.execute_cell(cell, i)
                took.append(time.perf_counter() - t0)
    # the first cell starts the session; a cell that waited out iopub_timeout takes 4 s more
    slow = [round(t, 2) for t in took[1:] if t > (3.0 if endpoint == "local" else 3.5)]
    assert slow == [], took
    assert [o.get("text") for o in nb.cells[4].outputs] == ["1\n"]

