"""Live output (issue 18): the pump's prompt protocol (pure) and the proxy kernel on the local
endpoint over REST, where the same pump makes output arrive as it happens.

The cluster tier (first output, lag, a manager restart) is ``test_cluster_live.py``; the strict
targets are ``bench/live_bench.py``'s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from backendai_jupyter.client.execution import split_flush
from backendai_jupyter.richchannel.pump import live_code, read_flush_prefix
from backendai_jupyter.richchannel.remote.live import flush_token

from .conftest import LOCAL, kernel_env

PREFIX = "\x1b]BAIF;" + "A" * 22 + ";"


@pytest.mark.parametrize(
    ("prompt", "prefix", "expected"),
    [
        (flush_token(PREFIX, "f", 3), PREFIX, ("", "f", flush_token(PREFIX, "f", 3))),
        ("\r 40%|####" + flush_token(PREFIX, "f", 12), PREFIX,
         ("\r 40%|####", "f", flush_token(PREFIX, "f", 12))),
        (flush_token(PREFIX, "b", 5), PREFIX, ("", "b", flush_token(PREFIX, "b", 5))),
        (flush_token(PREFIX, "q", 4), PREFIX, ("", "q", flush_token(PREFIX, "q", 4))),
        ("name? ", PREFIX, None),  # a real input() prompt
        (flush_token(PREFIX, "f", 3), None, None),  # no pump in this session
        (flush_token("\x1b]BAIF;" + "B" * 22 + ";", "f", 3), PREFIX, None),  # another nonce
        (PREFIX + "x1\x07", PREFIX, None),  # unknown kind
        (PREFIX + "f\x07", PREFIX, None),  # no sequence number
        (flush_token(PREFIX, "f", 3) + " ", PREFIX, None),  # not at the end
    ],
)
def test_split_flush(prompt: str, prefix: str | None, expected: Any) -> None:
    assert split_flush(prompt, prefix) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (PREFIX + "\x07\n", PREFIX),
        ("noise\n" + PREFIX + "\x07\nmore", PREFIX),
        ("\x1b]BAIF;short;\x07\n", None),
        ("", None),
    ],
)
def test_read_prefix(text: str, expected: str | None) -> None:
    assert read_flush_prefix(text) == expected


def test_install_code_compiles_and_hides_its_value() -> None:
    code = live_code(True)
    compile(code, "<install>", "exec")
    assert code.rstrip().endswith("and None")


@pytest.fixture(scope="module")
def rest_kernel() -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    with kernel_env({**LOCAL, "BACKEND_EXECUTE_TRANSPORT": "rest"}):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        kc.execute_interactive("import time", timeout=180)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def stream_times(
    kc: BlockingKernelClient, code: str, **kw: Any
) -> tuple[dict[str, Any], list[tuple[float, float, str]]]:
    """Run a cell; (reply content, [(seconds since the request, wall clock, stdout text)])."""
    seen: list[tuple[float, float, str]] = []
    t0 = time.monotonic()

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            seen.append((time.monotonic() - t0, time.time(), msg["content"]["text"]))

    reply = kc.execute_interactive(code, timeout=120, output_hook=hook, **kw)
    return reply["content"], seen


LOOP = "import time\nfor i in range(15):\n    print('L', time.time(), flush=True)\n    time.sleep(0.2)"


def assert_live(kc: BlockingKernelClient) -> None:
    """First output and a 0.2 s print loop's lag, loosely (<= 1 s; bench/ has the targets).
    The servers run on this machine, so the remote time stamps use this machine's clock."""
    reply, seen = stream_times(kc, "print('first', flush=True)\ntime.sleep(2)")
    assert reply["status"] == "ok" and seen and "first" in seen[0][2]
    assert seen[0][0] <= 1.0, seen
    reply, seen = stream_times(kc, LOOP)
    assert reply["status"] == "ok"
    text = "".join(t for _, _, t in seen)
    assert text.count("L ") == 15 and "BAIF" not in text, text
    lag = sorted(
        wall - float(line.split()[1])
        for _, wall, t in seen
        for line in t.splitlines()
        if line.startswith("L ")
    )
    assert lag[int(0.95 * len(lag))] <= 1.0, lag


def test_rest_on_local_endpoint_is_live(rest_kernel: Any) -> None:
    assert_live(rest_kernel[1])


def test_real_input_interleaves_with_flushes(rest_kernel: Any) -> None:
    _, kc = rest_kernel
    prompts: list[str] = []

    def answer(msg: dict[str, Any]) -> None:
        prompts.append(msg["content"]["prompt"])
        kc.input("yes-" + str(len(prompts)))

    code = (
        "import sys, threading\n"
        "def chatter():\n    for i in range(30):\n        sys.stdout.write(f'bg {i}\\n'); time.sleep(0.03)\n"
        "t = threading.Thread(target=chatter)\nt.start()\n"
        "for j in range(3):\n    print('got', input(f'q{j}? '))\n    time.sleep(0.25)\n"
        "t.join()\n"
    )
    reply, seen = stream_times(kc, code, stdin_hook=answer, allow_stdin=True)
    text = "".join(t for _, _, t in seen)
    assert reply["status"] == "ok"
    assert prompts == ["q0? ", "q1? ", "q2? "]  # only the user's prompts reach the front-end
    assert [ln for ln in text.splitlines() if ln.startswith("got")] == [
        "got yes-1", "got yes-2", "got yes-3"]
    assert text.count("bg ") == 30 and "BAIF" not in text


def test_interrupt_during_live_output(rest_kernel: Any) -> None:
    km, kc = rest_kernel
    # The kernel's interrupt_mode is "message": what KernelManager.interrupt_kernel sends, without
    # the event loop its sync wrapper would leave behind in the timer's thread.
    def interrupt() -> None:
        kc.control_channel.send(kc.session.msg("interrupt_request", {}))

    threading.Timer(1.0, interrupt).start()
    reply, _ = stream_times(kc, "for i in range(100):\n    print(i, flush=True); time.sleep(0.1)")
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    reply, seen = stream_times(kc, "print('after')")
    assert reply["status"] == "ok" and seen[0][0] <= 1.0 and "after" in seen[0][2]


THREAD = (
    "import threading, time\n"
    "def worker():\n"
    "    for i in range(5):\n"
    "        time.sleep(0.4)\n"
    "        print('bg', i, time.time(), flush=True)\n"
    "threading.Thread(target=worker).start()\n"
)


def after_idle(kc: BlockingKernelClient, code: str, wait: float) -> tuple[str, list[tuple[float, dict[str, Any]]]]:
    """Run ``code``, then read iopub for ``wait`` s after its idle: (the cell's msg_id,
    [(wall clock, message)] of every message that came after the cell's idle)."""
    msg_id = kc.execute(code)
    idle = False
    got: list[tuple[float, dict[str, Any]]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except Exception:  # queue.Empty
            continue
        parent = msg["parent_header"].get("msg_id", "")
        if msg["msg_type"] == "status" and parent == msg_id:
            if msg["content"]["execution_state"] == "idle" and not idle:
                idle = True
                deadline = time.monotonic() + wait
        elif idle:
            got.append((time.time(), msg))
    kc.get_shell_msg(timeout=10)  # the execute_reply
    return msg_id, got


def idle_output(kc: BlockingKernelClient, code: str, wait: float) -> tuple[str, list[tuple[str, float, str]]]:
    """[(parent msg_id, lag, line)] of the ``bg`` lines printed after the cell's idle."""
    msg_id, got = after_idle(kc, code, wait)
    lines = []
    for wall, msg in got:
        if msg["msg_type"] == "stream":
            for line in msg["content"]["text"].splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[0] == "bg":
                    lines.append((msg["parent_header"].get("msg_id", ""), wall - float(parts[2]), line))
    return msg_id, lines


def assert_thread_output_while_idle(kc: BlockingKernelClient) -> None:
    msg_id, got = idle_output(kc, THREAD, wait=4.0)
    assert [line.split()[1] for _, _, line in got] == ["0", "1", "2", "3", "4"], got
    assert {parent for parent, _, _ in got} == {msg_id}  # under the cell that started it
    assert max(lag for _, lag, _ in got) <= 1.0, got
    # The next cell runs at once (the collector yields the run queue), and no thread is left:
    reply, seen = stream_times(kc, "print('next')")
    assert reply["status"] == "ok" and seen[0][0] <= 2.0


def test_thread_output_while_idle_rest(rest_kernel: Any) -> None:
    assert_thread_output_while_idle(rest_kernel[1])


@pytest.fixture(scope="module")
def ws_kernel() -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    with kernel_env({**LOCAL, "BACKEND_EXECUTE_TRANSPORT": None}):  # the local default
        km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        kc.execute_interactive("import time", timeout=180)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def test_thread_output_while_idle_websocket(ws_kernel: Any) -> None:
    assert_thread_output_while_idle(ws_kernel[1])


def test_next_cell_interrupts_the_collector(rest_kernel: Any) -> None:
    """A thread that lives long keeps a collector running; a cell then starts at once, its
    own output is its own, and the thread's later lines still arrive."""
    _, kc = rest_kernel
    code = THREAD.replace("range(5)", "range(15)")
    msg_id, got = idle_output(kc, code, wait=1.5)
    assert got and {p for p, _, _ in got} == {msg_id}
    reply, seen = stream_times(kc, "print('mine')")
    assert reply["status"] == "ok" and seen and seen[0][0] <= 3.0
    assert any("mine" in text for _, _, text in seen)
    time.sleep(6)  # the thread ends; its lines went to the cells that were running or last


WIDGET = (
    "import ipywidgets as W, threading, time\n"
    "bar = W.IntProgress(max=5)\n"
    "display(bar)\n"
    "def work():\n"
    "    for i in range(5):\n"
    "        time.sleep(0.3)\n"
    "        bar.value = i + 1\n"
    "threading.Thread(target=work).start()\n"
)


def test_thread_updates_a_widget_while_idle(ws_kernel: Any) -> None:
    _, kc = ws_kernel
    msg_id, got = after_idle(kc, WIDGET, wait=3.0)
    values = [
        m["content"]["data"]["state"]["value"]
        for _, m in got
        if m["msg_type"] == "comm_msg" and "value" in m["content"]["data"].get("state", {})
    ]
    assert values == [1, 2, 3, 4, 5], [m["msg_type"] for _, m in got]
    assert {m["parent_header"]["msg_id"] for _, m in got if m["msg_type"] == "comm_msg"} == {msg_id}
