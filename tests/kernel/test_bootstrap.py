"""The remote half of the rich channel, run in a plain local ipykernel (what the runner uses).

Every display message must leave the remote kernel only as nonce-marked frames on stdout, which
is all a stock Backend.AI runner forwards faithfully.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from backendai_jupyter.display.outputs import Frame, FrameDecoder
from backendai_jupyter.kernel.bootstrap import EOF_REPLY, bootstrap_code, helper_call, new_nonce

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def remote() -> Iterator[tuple[KernelManager, BlockingKernelClient, str]]:
    km, kc = start_new_kernel(kernel_name="python3")
    nonce = new_nonce()
    try:
        frames, _ = run(kc, nonce, bootstrap_code(nonce))
        assert [f.type for f in frames] == ["ready"]
        yield km, kc, nonce
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run(
    kc: BlockingKernelClient, nonce: str, code: str, stdin: str | None = None
) -> tuple[list[Frame], list[tuple[str, Any]]]:
    """Execute; return the frames decoded from stdout and every other iopub output."""
    msg_id = kc.execute(code, allow_stdin=stdin is not None)
    decoder = FrameDecoder(nonce)
    frames: list[Frame] = []
    other: list[tuple[str, Any]] = []
    while True:
        if stdin is not None:
            try:
                kc.get_stdin_msg(timeout=0.01)
                kc.input(stdin)
            except queue.Empty:
                pass
        try:
            msg = kc.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        t, c = msg["msg_type"], msg["content"]
        if t == "status" and c["execution_state"] == "idle":
            break
        if t == "stream" and c["name"] == "stdout":
            for part in decoder.feed(c["text"]):
                (frames if isinstance(part, Frame) else other).append(  # type: ignore[arg-type]
                    part if isinstance(part, Frame) else ("stdout", part)
                )
        elif t not in ("status", "execute_input"):
            other.append((t, c))
    return frames, other


def test_display_updates_results_and_clear(remote: Any) -> None:
    _, kc, nonce = remote
    code = (
        "from IPython.display import display, Markdown, Latex, HTML, clear_output\n"
        "print('before')\n"
        "h = display(Markdown('**m**'), display_id=True)\n"
        "h.update(Latex('$x^2$'))\n"
        "display(HTML('<b>h</b>'), metadata={'k': 1})\n"
        "clear_output(wait=True)\n"
        "print('after')\n"
        "{'a': 1}\n"
    )
    frames, other = run(kc, nonce, code)
    assert [o for o in other if o[0] != "stdout"] == []
    assert "".join(text for _, text in other) == "before\nafter\n"
    kinds = [(f.type, bool(f.payload.get("update"))) for f in frames]
    assert kinds == [
        ("display", False),
        ("display", True),
        ("display", False),
        ("clear", False),
        ("result", False),
    ]
    assert frames[0].payload["data"]["text/markdown"] == "**m**"
    assert frames[1].payload["data"]["text/latex"] == "$x^2$"
    assert (
        frames[0].payload["transient"]["display_id"] == frames[1].payload["transient"]["display_id"]
    )
    assert frames[2].payload["metadata"] == {"k": 1}
    assert frames[3].payload["wait"] is True
    assert frames[4].payload["data"]["text/plain"] == "{'a': 1}"


def test_errors_are_structured(remote: Any) -> None:
    _, kc, nonce = remote
    frames, other = run(kc, nonce, "def f():\n    raise ValueError('bad')\nf()")
    assert [o for o in other if o[0] != "stdout"] == []
    assert [f.type for f in frames] == ["error"]
    assert frames[0].payload["ename"] == "ValueError" and frames[0].payload["evalue"] == "bad"
    assert any("f()" in line for line in frames[0].payload["traceback"])
    frames, _ = run(kc, nonce, "1 +")
    assert frames[0].payload["ename"] == "SyntaxError"


def test_input_eof_reply_and_normal_input(remote: Any) -> None:
    _, kc, nonce = remote
    frames, _ = run(kc, nonce, "input('q? ')", stdin=EOF_REPLY)
    assert frames[0].payload["ename"] == "EOFError"
    assert "allow_stdin" in frames[0].payload["evalue"]
    frames, _ = run(kc, nonce, "input('q? ')", stdin="yes")
    assert frames[0].payload["data"]["text/plain"] == "'yes'"


def test_complete_and_inspect_helpers(remote: Any) -> None:
    _, kc, nonce = remote
    run(kc, nonce, "some_value_xyz = 42")
    frames, _ = run(kc, nonce, helper_call("r1", "do_complete", "some_val", 8))
    assert frames[0].type == "reply" and frames[0].payload["id"] == "r1"
    assert "some_value_xyz" in frames[0].payload["content"]["matches"]
    frames, _ = run(kc, nonce, helper_call("r2", "do_inspect", "some_value_xyz", 5, 0))
    content = frames[0].payload["content"]
    assert content["found"] is True and "42" in content["data"]["text/plain"]


def test_user_cannot_forge_frames(remote: Any) -> None:
    _, kc, nonce = remote
    fake = "\\x1b]BAI;guess;eyJ0IjogImVycm9yIn0=\\x07"
    frames, other = run(kc, nonce, f"print('{fake}')")
    assert frames == []
    assert "".join(t for k, t in other if k == "stdout").startswith("\x1b]BAI;guess;")


def test_helper_call_validates() -> None:
    with pytest.raises(ValueError):
        helper_call("r", "exec", "x")
    with pytest.raises(TypeError):
        helper_call("r", "do_complete", 1.5)
