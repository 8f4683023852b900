"""The proxy kernel behaves like a local ipykernel (issue 14), on the local endpoint and on the
real 26.9.6 cluster: every iopub message crosses (direct ``session.send``, comms with buffers),
reply payloads (pager, ``%load``), ``user_expressions``, one execution counter, and
``StdinNotImplementedError``.

One kernel (one session) per endpoint for the module; the tests share it and read only what
they ran themselves.
"""

from __future__ import annotations

import base64
import platform
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel
from nbclient import NotebookClient

from backendai_jupyter.display.outputs import strip_ansi

from .conftest import CLUSTER_ENV, LOCAL, cluster_values, ignore_third_party_leftovers, kernel_env

pytestmark = pytest.mark.timeout(240)

Kernel = tuple[KernelManager, BlockingKernelClient]


@pytest.fixture(
    scope="module",
    params=[
        "local",
        pytest.param(
            "cluster",
            marks=[
                pytest.mark.cluster,
                pytest.mark.skipif(not CLUSTER_ENV.exists(), reason="no Backend.AI test cluster"),
            ],
        ),
    ],
)
def kernel(request: pytest.FixtureRequest) -> Iterator[Kernel]:
    env = LOCAL if request.param == "local" else cluster_values()
    with kernel_env(env):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        reply, _ = run(kc, "print('session up')")
        assert reply["status"] == "ok", reply
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def run(
    kc: BlockingKernelClient, code: str, **kwargs: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Execute; return the reply content and the iopub messages (whole) of this request."""
    msg_id = kc.execute(code, **kwargs)
    msgs: list[dict[str, Any]] = []
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=180)
        except queue.Empty:
            raise AssertionError(f"no idle for {code!r}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status":
            if msg["content"]["execution_state"] == "idle":
                break
            continue
        if msg["msg_type"] != "execute_input":
            msgs.append(msg)
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"], msgs


def kernel_info(kc: BlockingKernelClient) -> dict[str, Any]:
    msg_id = kc.kernel_info()
    while True:  # start_new_kernel's own kernel_info replies may still be queued
        reply = kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]  # type: ignore[no-any-return]


def stdout(msgs: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"]
        for m in msgs
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


def test_direct_session_send_displays_and_updates(kernel: Kernel) -> None:
    """What nbclient's own tests and some libraries do: publish on the session themselves."""
    _, kc = kernel
    code = (
        "k = get_ipython().kernel\n"
        "def pub(t, c):\n"
        "    k.session.send(k.iopub_socket, t, c, parent=k.get_parent())\n"
        "pub('display_data', {'data': {'text/plain': '1'}, 'metadata': {},"
        " 'transient': {'display_id': 'abc'}})\n"
        "pub('update_display_data', {'data': {'text/plain': '234'}, 'metadata': {},"
        " 'transient': {'display_id': 'abc'}})\n"
        "pub('execute_result', {'data': {'text/plain': 'x'}, 'metadata': {'m': 1},"
        " 'execution_count': 1})\n"
    )
    reply, msgs = run(kc, code)
    assert reply["status"] == "ok"
    got = [(m["msg_type"], m["content"]["data"]["text/plain"]) for m in msgs]
    assert got == [("display_data", "1"), ("update_display_data", "234"), ("execute_result", "x")]
    assert msgs[1]["content"]["transient"] == {"display_id": "abc"}
    # an execute_result carries the notebook's count, whatever the sender wrote
    assert msgs[2]["content"]["execution_count"] == reply["execution_count"]


def test_comm_messages_cross_with_buffers(kernel: Kernel) -> None:
    _, kc = kernel
    code = (
        "from comm import create_comm\n"
        "c = create_comm(target_name='bai.fidelity', data={'a': 1}, metadata={'v': '1'},"
        " buffers=[b'\\x00\\x01'])\n"
        "c.send({'b': 2}, buffers=[b'xyz', b''])\n"
        "c.close()\n"
    )
    reply, msgs = run(kc, code)
    assert reply["status"] == "ok"
    assert [m["msg_type"] for m in msgs] == ["comm_open", "comm_msg", "comm_close"]
    assert msgs[0]["content"]["target_name"] == "bai.fidelity"
    assert msgs[0]["content"]["data"] == {"a": 1} and msgs[0]["metadata"] == {"v": "1"}
    assert [bytes(b) for b in msgs[0]["buffers"]] == [b"\x00\x01"]
    assert [bytes(b) for b in msgs[1]["buffers"]] == [b"xyz", b""]
    assert len({m["content"]["comm_id"] for m in msgs}) == 1


def test_help_goes_to_the_pager(kernel: Kernel) -> None:
    _, kc = kernel
    for code in ("len?", "%pinfo len"):
        reply, msgs = run(kc, code)
        assert reply["status"] == "ok" and msgs == []
        [page] = reply["payload"]
        assert page["source"] == "page"
        assert "Return the number of items" in strip_ansi(page["data"]["text/plain"])
    reply, _ = run(kc, "%magic")
    assert reply["payload"][0]["source"] == "page"


def test_load_sets_the_next_input(kernel: Kernel) -> None:
    _, kc = kernel
    run(kc, "open('bai_snippet.py', 'w').write('answer = 6 * 7\\n')")
    reply, _ = run(kc, "%load bai_snippet.py")
    [nxt] = reply["payload"]
    assert nxt["source"] == "set_next_input"
    assert nxt["text"] == "# %load bai_snippet.py\nanswer = 6 * 7\n"


def test_user_expressions_are_evaluated_remotely(kernel: Kernel) -> None:
    _, kc = kernel
    reply, _ = run(
        kc,
        "import os\nremote_pid = os.getpid()",
        user_expressions={"pid": "remote_pid == os.getpid()", "bad": "1/0"},
    )
    ue = reply["user_expressions"]
    assert ue["pid"]["status"] == "ok" and ue["pid"]["data"]["text/plain"] == "True"
    assert ue["bad"]["status"] == "error" and ue["bad"]["ename"] == "ZeroDivisionError"


def test_input_without_stdin_raises_stdin_not_implemented(kernel: Kernel) -> None:
    _, kc = kernel
    reply, msgs = run(kc, "input('name? ')", allow_stdin=False)
    assert reply["status"] == "error" and reply["ename"] == "StdinNotImplementedError"
    assert "name?" not in stdout(msgs)  # no prompt: input was never requested


def test_one_counter_across_local_cells_errors_and_silent_runs(kernel: Kernel) -> None:
    _, kc = kernel
    first, _ = run(kc, "'first'")
    n = first["execution_count"]
    local, _ = run(kc, "%%local\n'local'")
    assert local["execution_count"] == n + 1
    failed, msgs = run(kc, "1/0")
    assert failed["status"] == "error" and failed["execution_count"] == n + 2
    [err] = [m["content"] for m in msgs if m["msg_type"] == "error"]
    assert f"Cell In[{n + 2}], line 1" in strip_ansi("\n".join(err["traceback"]))
    silent, _ = run(kc, "'silent'", silent=True)
    assert silent["status"] == "ok"
    reply, msgs = run(kc, f"(In[{n}], _{n}, Out[{n}])")
    assert reply["execution_count"] == n + 3
    [res] = [m["content"] for m in msgs if m["msg_type"] == "execute_result"]
    assert res["execution_count"] == n + 3
    assert res["data"]["text/plain"] == "(\"'first'\", 'first', 'first')"
    reply, msgs = run(kc, f"%history -n {n + 2}-{n + 3}")
    assert stdout(msgs).splitlines() == [
        f"{n + 2:>4}: 1/0",
        f"{n + 3:>4}: (In[{n}], _{n}, Out[{n}])",
    ]


def test_kernel_info_reports_the_remote_interpreter(kernel: Kernel) -> None:
    _, kc = kernel
    _, msgs = run(kc, "import platform; print(platform.python_version())")
    remote_version = stdout(msgs).strip()
    info = kernel_info(kc)
    lang = info["language_info"]
    assert lang["name"] == "python" and lang["version"] == remote_version
    assert lang["pygments_lexer"] == "ipython3" and lang["mimetype"] == "text/x-python"
    # the debugger would attach to the proxy, not to the session: not offered
    assert "debugger" not in info.get("supported_features", [])


def test_exit_keep_kernel_leaves_everything_running(kernel: Kernel) -> None:
    km, kc = kernel
    reply, _ = run(kc, "exit(keep_kernel=True)")
    assert reply["payload"] == [{"source": "ask_exit", "keepkernel": True}]
    assert km.is_alive()
    assert run(kc, "print('still here')")[0]["status"] == "ok"


def test_interrupt_raises_keyboard_interrupt_remotely(kernel: Kernel) -> None:
    km, kc = kernel
    timer = threading.Timer(2.0, km.interrupt_kernel)
    timer.start()
    reply, msgs = run(kc, "import time\nfor i in range(600):\n    time.sleep(0.1)")
    timer.join()
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    [err] = [m["content"] for m in msgs if m["msg_type"] == "error"]
    # the remote kernel's own exception, with the line it stopped on
    assert "time.sleep(0.1)" in strip_ansi("\n".join(err["traceback"]))


def test_interrupt_while_input_waits(kernel: Kernel) -> None:
    """ipykernel raises KeyboardInterrupt from input(); the session stays usable."""
    km, kc = kernel
    timer = threading.Timer(2.0, km.interrupt_kernel)
    timer.start()
    reply, _ = run(kc, "answer = input('name? ')", allow_stdin=True)
    timer.join()
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    assert reply["evalue"] == "Interrupted by user"  # the remote kernel's own, not abandoned
    time.sleep(0.5)  # ipykernel aborts requests that arrive right after an error
    reply, msgs = run(kc, "print('after', 'answer' in dir())")
    assert reply["status"] == "ok" and stdout(msgs) == "after False\n"


def test_counter_survives_a_new_session(kernel: Kernel) -> None:
    """Runs last: it replaces the module's session."""
    _, kc = kernel
    before, _ = run(kc, "'old session'")
    run(kc, "%backendai kernel stop")
    for _ in range(100):
        _, msgs = run(kc, "%backendai kernel status")
        if "no kernel session" in stdout(msgs):
            break
        time.sleep(0.2)
    reply, msgs = run(kc, "import os\n(len(In), os.getpid())")
    n = reply["execution_count"]
    assert reply["status"] == "ok" and n >= before["execution_count"] + 3, reply
    [res] = [m["content"] for m in msgs if m["msg_type"] == "execute_result"]
    assert res["data"]["text/plain"].startswith(f"({n + 1}, ")
    reply, msgs = run(kc, "1/0")
    [err] = [m["content"] for m in msgs if m["msg_type"] == "error"]
    assert f"Cell In[{n + 1}], line 1" in strip_ansi("\n".join(err["traceback"]))


def test_kernel_info_before_the_session_is_ours(local_endpoint: None) -> None:
    km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        info = kernel_info(kc)
        assert info["language_info"]["version"] == platform.python_version()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_exit_stops_the_kernel_as_a_local_one_does(local_endpoint: None) -> None:
    km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        assert run(kc, "print(1)")[0]["status"] == "ok"
        reply, _ = run(kc, "exit")
        assert reply["payload"] == [{"source": "ask_exit", "keepkernel": False}]
        for _ in range(100):
            if not km.is_alive():
                break
            time.sleep(0.1)
        assert not km.is_alive()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


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


@ignore_third_party_leftovers
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_notebook_folder_makes_relative_paths_work(endpoint: str, tmp_path: Path) -> None:
    """With upload_dir on, a notebook's relative paths work in the session as they are."""
    folder = tmp_path / "project"
    (folder / "images").mkdir(parents=True)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    (folder / "images" / "logo.png").write_bytes(png)
    (folder / "helpers.py").write_text("ANSWER = 42\n")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".env").write_text("SECRET=1\n")
    (folder / "huge.bin").write_bytes(b"\0" * (200 * 1024))
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from IPython.display import Image\nImage(filename='images/logo.png')"
        ),
        nbformat.v4.new_code_cell("import helpers\nhelpers.ANSWER"),
        nbformat.v4.new_code_cell(
            "import os\n[n for n in ('.git', '.env', 'huge.bin', 'analysis.ipynb') if os.path.exists(n)]"
        ),
    ]
    nbformat.write(nb, folder / "analysis.ipynb")
    env = {
        **(LOCAL if endpoint == "local" else cluster_values()),
        "BACKEND_UPLOAD_DIR": "on",
        "BACKEND_UPLOAD_FILE_MAX": "64k",
    }
    with kernel_env(env):
        NotebookClient(
            nb,
            timeout=180,
            kernel_name="backendai-python",
            resources={"metadata": {"path": str(folder)}},
        ).execute()
    image, answer, present = (c.outputs for c in nb.cells)
    progress = " ".join(
        str(o.get("data", {}).get("text/plain", ""))
        for o in image
        if o.output_type == "display_data"
    )
    assert "sent the notebook folder: 3 files" in progress, progress
    assert "1 large files skipped (huge.bin" in progress and ".git" in progress
    [result] = [o for o in image if o.output_type == "execute_result"]
    assert base64.b64decode(result["data"]["image/png"]) == png
    assert answer[0]["data"]["text/plain"] == "42"
    assert present[0]["data"]["text/plain"] == "['analysis.ipynb']"
