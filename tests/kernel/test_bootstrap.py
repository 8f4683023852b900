"""The remote half of the rich channel, run in a plain local ipykernel (what the runner uses).

Every iopub message except stream/status/execute_input must leave the remote kernel only as
nonce-marked frames on stdout, which is all a stock Backend.AI runner forwards faithfully.
"""

from __future__ import annotations

import base64
import json
import queue
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from backendai_jupyter.display.outputs import strip_ansi
from backendai_jupyter.richchannel import (
    EOF_REPLY,
    Frame,
    FrameDecoder,
    bootstrap_code,
    frame_message,
    helper_call,
    read_ready,
    with_header,
)

pytestmark = pytest.mark.timeout(60)

Remote = tuple[KernelManager, BlockingKernelClient, str]


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        _, text, _ = run_raw(kc, bootstrap_code())
        found = read_ready(text)
        assert found is not None, text
        nonce, ready = found
        assert ready.payload["v"] == 2
        assert ready.payload["language_info"]["name"] == "python"
        yield km, kc, nonce
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_raw(
    kc: BlockingKernelClient, code: str, stdin: str | list[str] | None = None
) -> tuple[dict[str, Any], str, list[tuple[str, Any]]]:
    """Execute as the runner does; return the reply, all stdout text and other iopub output.
    ``stdin`` answers every input request (a list: one answer each, in turn)."""
    answers = list(stdin) if isinstance(stdin, list) else None
    msg_id = kc.execute(code, allow_stdin=True)
    stdout: list[str] = []
    other: list[tuple[str, Any]] = []
    while True:
        try:
            kc.get_stdin_msg(timeout=0.01)
            if answers is not None:
                kc.input(answers.pop(0) if answers else "q")
            else:
                kc.input(stdin if stdin is not None else "")
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
            stdout.append(c["text"])
        elif t not in ("status", "execute_input"):
            other.append((t, c))
    reply = kc.get_shell_msg(timeout=10)
    return reply["content"], "".join(stdout), other


def run(
    kc: BlockingKernelClient,
    nonce: str,
    code: str,
    stdin: str | list[str] | None = None,
    **header: Any,
) -> tuple[list[Frame], list[tuple[str, Any]]]:
    """Execute with a cell header; return the frames and every other output."""
    _, text, other = run_raw(kc, with_header(code, nonce, **header), stdin)
    decoder = FrameDecoder(nonce)
    frames: list[Frame] = []
    for part in decoder.feed(text) + decoder.flush():
        if isinstance(part, Frame):
            frames.append(part)
        else:
            other.append(("stdout", part))
    return frames, other


def msgs(frames: list[Frame]) -> list[tuple[str, dict[str, Any]]]:
    return [(f.payload["msg_type"], f.payload) for f in frames if f.type == "msg"]


def reply_of(frames: list[Frame]) -> dict[str, Any]:
    [reply] = [f.payload["content"] for f in frames if f.type == "execute_reply"]
    return reply  # type: ignore[no-any-return]


def test_display_updates_results_and_clear(remote: Remote) -> None:
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
    got = msgs(frames)
    assert [t for t, _ in got] == [
        "display_data",
        "update_display_data",
        "display_data",
        "clear_output",
        "execute_result",
    ]
    c = [p["content"] for _, p in got]
    assert c[0]["data"]["text/markdown"] == "**m**"
    assert c[1]["data"]["text/latex"] == "$x^2$"
    assert c[0]["transient"]["display_id"] == c[1]["transient"]["display_id"]
    assert c[2]["metadata"] == {"k": 1}
    assert c[3]["wait"] is True
    assert c[4]["data"]["text/plain"] == "{'a': 1}"
    assert reply_of(frames)["status"] == "ok"


def test_direct_session_send_becomes_messages(remote: Remote) -> None:
    _, kc, nonce = remote
    code = (
        "k = get_ipython().kernel\n"
        "s = k.session\n"
        "s.send(k.iopub_socket, 'display_data', {'data': {'text/plain': '1'}, 'metadata': {},"
        " 'transient': {'display_id': 'dd'}}, parent=k.get_parent())\n"
        "s.send(k.iopub_socket, 'update_display_data', {'data': {'text/plain': '234'},"
        " 'metadata': {}, 'transient': {'display_id': 'dd'}}, parent=k.get_parent())\n"
        "s.send(k.iopub_socket, 'execute_result', {'data': {'text/plain': '5'}, 'metadata': {},"
        " 'execution_count': 99}, parent=k.get_parent());\n"
    )
    frames, other = run(kc, nonce, code)
    assert other == []
    got = [(t, p["content"]["data"]["text/plain"]) for t, p in msgs(frames)]
    assert got == [("display_data", "1"), ("update_display_data", "234"), ("execute_result", "5")]
    mapped = [frame_message(f, 3) for f in frames if f.type == "msg"]
    assert mapped[2] is not None and mapped[2].content["execution_count"] == 3


def test_comms_keep_their_buffers(remote: Remote) -> None:
    _, kc, nonce = remote
    code = (
        "from comm import create_comm\n"
        "c = create_comm(target_name='bai.test', data={'a': 1}, buffers=[b'xy'])\n"
        "c.send({'b': 2}, buffers=[b'\\x00\\x01\\xff'])\n"
        "c.close()\n"
    )
    frames, other = run(kc, nonce, code)
    assert other == []
    got = msgs(frames)
    assert [t for t, _ in got] == ["comm_open", "comm_msg", "comm_close"]
    assert got[0][1]["content"]["target_name"] == "bai.test"
    assert got[0][1]["content"]["data"] == {"a": 1}
    assert got[1][1]["content"]["data"] == {"b": 2}
    msg = frame_message(frames[1])
    assert msg is not None and msg.buffers == (b"\x00\x01\xff",)
    assert base64.b64decode(got[0][1]["buffers"][0]) == b"xy"
    ids = {p["content"]["comm_id"] for _, p in got}
    assert len(ids) == 1


def test_errors_are_structured(remote: Remote) -> None:
    _, kc, nonce = remote
    frames, other = run(kc, nonce, "def f():\n    raise ValueError('bad')\nf()", count=41)
    assert [o for o in other if o[0] != "stdout"] == []
    [(t, p)] = msgs(frames)
    assert t == "error"
    assert p["content"]["ename"] == "ValueError" and p["content"]["evalue"] == "bad"
    assert "Cell In[41], line 3" in strip_ansi("\n".join(p["content"]["traceback"]))
    assert reply_of(frames)["status"] == "error"
    frames, _ = run(kc, nonce, "1 +")
    assert msgs(frames)[0][1]["content"]["ename"] == "SyntaxError"


def test_counter_follows_the_header(remote: Remote) -> None:
    _, kc, nonce = remote
    run(kc, nonce, "'seven'", count=7)
    run(kc, nonce, "'hidden'", silent=True, store_history=False)
    frames, _ = run(kc, nonce, "(In[7], _7, Out[7], len(In))", count=9)
    [(t, p)] = msgs(frames)
    assert t == "execute_result"
    assert p["content"]["data"]["text/plain"] == "(\"'seven'\", 'seven', 'seven', 10)"
    assert p["content"]["execution_count"] == 9
    assert reply_of(frames)["execution_count"] == 9
    # the header line never reaches history, raw or parsed
    frames, other = run(kc, nonce, "%history -n 9", count=11)
    text = "".join(o for k, o in other if k == "stdout")
    assert text.strip() == "9: (In[7], _7, Out[7], len(In))"
    # a lower count than history holds starts a new history session
    frames, _ = run(kc, nonce, "len(In), In[2]", count=2)
    assert msgs(frames)[0][1]["content"]["data"]["text/plain"] == "(3, 'len(In), In[2]')"


def test_payloads_and_user_expressions(remote: Remote) -> None:
    _, kc, nonce = remote
    frames, _ = run(kc, nonce, "len?")
    [page] = reply_of(frames)["payload"]
    assert page["source"] == "page" and "Return the number" in json.dumps(page["data"])
    frames, _ = run(kc, nonce, "%recall 1", count=3)
    frames, _ = run(kc, nonce, "exit")
    assert reply_of(frames)["payload"][0]["source"] == "ask_exit"
    frames, _ = run(kc, nonce, "zz = 6", user_expressions={"a": "zz * 7", "b": "1/0"})
    ue = reply_of(frames)["user_expressions"]
    assert ue["a"]["status"] == "ok" and ue["a"]["data"]["text/plain"] == "42"
    assert ue["b"]["status"] == "error" and ue["b"]["ename"] == "ZeroDivisionError"


def test_stdin_not_implemented(remote: Remote) -> None:
    _, kc, nonce = remote
    frames, _ = run(kc, nonce, "input('q? ')", allow_stdin=False)
    [(_, p)] = msgs(frames)
    assert p["content"]["ename"] == "StdinNotImplementedError"
    code = (
        "from IPython.core.error import StdinNotImplementedError\n"
        "try:\n    input()\nexcept StdinNotImplementedError:\n    print('caught')\n"
    )
    frames, other = run(kc, nonce, code, allow_stdin=False)
    assert "".join(t for k, t in other if k == "stdout") == "caught\n"
    frames, _ = run(kc, nonce, "input('q? ')", stdin=EOF_REPLY)
    assert msgs(frames)[0][1]["content"]["ename"] == "StdinNotImplementedError"
    frames, _ = run(kc, nonce, "input('q? ')", stdin="yes")
    assert msgs(frames)[0][1]["content"]["data"]["text/plain"] == "'yes'"


def _shown(frames: list[Frame]) -> str:
    [(_, p)] = msgs(frames)
    assert p["msg_type"] == "error"
    return strip_ansi("\n".join(p["content"]["traceback"]))


def test_no_frame_of_ours_in_tracebacks(remote: Remote) -> None:
    _, kc, nonce = remote
    ours = ("backendai rich channel", "ask(", "Channel", "guard", "skipping hidden")
    # ipykernel refuses (allow_stdin=False), or the proxy answers "no stdin" (EOF_REPLY)
    for text in (
        _shown(run(kc, nonce, "input('q? ')", allow_stdin=False)[0]),
        _shown(run(kc, nonce, "input('q? ')", stdin=EOF_REPLY)[0]),
    ):
        assert "----> 1 input('q? ')" in text
        assert not [w for w in ours if w in text], text
        assert text.rstrip().endswith("does not support input requests.")
    # %tb shows the last one again, %debug walks it: neither meets our frames
    frames, _ = run(kc, nonce, "%tb")
    assert not [w for w in ours if w in _shown(frames)]
    frames, other = run(kc, nonce, "%debug", stdin=["where", "q"])
    text = strip_ansi("".join(t for k, t in other if k == "stdout"))
    # (IPython's own bottom frame is hidden, "[... skipping 1 hidden frame(s)]", as locally)
    assert "input('q? ')" in text and not [w for w in ours[:-1] if w in text], text


def test_thread_output_during_a_run_arrives(remote: Remote) -> None:
    _, kc, nonce = remote
    code = (
        "import threading\nfrom IPython.display import display\n"
        "t = threading.Thread(target=lambda: display({'text/plain': 'from thread'}, raw=True))\n"
        "t.start(); t.join()\n"
    )
    frames, _ = run(kc, nonce, code)
    assert [p["content"]["data"] for _, p in msgs(frames)] == [{"text/plain": "from thread"}]


def test_complete_and_inspect_helpers(remote: Remote) -> None:
    _, kc, nonce = remote
    run(kc, nonce, "some_value_xyz = 42")
    hidden: dict[str, Any] = {"silent": True, "store_history": False}
    frames, _ = run(kc, nonce, helper_call("r1", "do_complete", "some_val", 8), **hidden)
    [reply] = [f for f in frames if f.type == "reply"]
    assert reply.payload["id"] == "r1"
    assert "some_value_xyz" in reply.payload["content"]["matches"]
    frames, _ = run(kc, nonce, helper_call("r2", "do_inspect", "some_value_xyz", 5, 0), **hidden)
    [reply] = [f for f in frames if f.type == "reply"]
    content = reply.payload["content"]
    assert content["found"] is True and "42" in content["data"]["text/plain"]


def test_user_cannot_forge_frames(remote: Remote) -> None:
    _, kc, nonce = remote
    fake = "\\x1b]BAI;guess;eyJ0IjogImVycm9yIn0=\\x07"
    frames, other = run(kc, nonce, f"print('{fake}')")
    assert [f.type for f in frames] == ["execute_reply"]
    assert "".join(t for k, t in other if k == "stdout").startswith("\x1b]BAI;guess;")
    assert read_ready("\x1b]BAI;guess;eyJ0IjogImVycm9yIn0=\x07") is None


def test_helper_call_validates() -> None:
    with pytest.raises(ValueError):
        helper_call("r", "exec", "x")
    with pytest.raises(TypeError):
        helper_call("r", "do_complete", 1.5)
    with pytest.raises(ValueError):
        with_header("1", "bad nonce!")


def test_bootstrap_again_changes_the_nonce(remote: Remote) -> None:
    _, kc, nonce = remote
    _, text, _ = run_raw(kc, bootstrap_code())
    found = read_ready(text)
    assert found is not None and found[0] != nonce
    # the new nonce works (this test runs last: the fixture's nonce is dead now)
    frames, other = run(kc, found[0], "1")
    assert msgs(frames)[0][0] == "execute_result"


def installed_nonce(kc: BlockingKernelClient) -> str:
    """Install again (an earlier test may have changed the nonce); the new nonce."""
    _, text, _ = run_raw(kc, bootstrap_code())
    found = read_ready(text)
    assert found is not None
    return found[0]


def run_streams(kc: BlockingKernelClient, nonce: str, code: str) -> list[tuple[str, str]]:
    """(name, text) of every stream message of one headed run, in the order they came."""
    msg_id = kc.execute(with_header(code, nonce))
    got: list[tuple[str, str]] = []
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            got.append((msg["content"]["name"], msg["content"]["text"]))
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            kc.get_shell_msg(timeout=10)
            return got


def test_large_output_leaves_in_bounded_messages(remote: Remote) -> None:
    """A loop printing megabytes leaves the kernel in messages of at most a piece (1 MiB), in
    every cell (IPython >= 9 puts back ``write`` after each cell), not one message at the end."""
    _, kc, _ = remote
    nonce = installed_nonce(kc)
    piece = 1 << 20
    for _ in range(2):
        streams = run_streams(kc, nonce, "print('y' * (3 << 20))\nprint('z')")
        texts = [text for name, text in streams if name == "stdout"]
        assert len(texts) >= 4 and max(len(t) for t in texts) <= piece
        decoder = FrameDecoder(nonce)
        plain = "".join(p for p in decoder.feed("".join(texts)) if isinstance(p, str))
        assert plain == "y" * (3 << 20) + "\nz\n"


def test_display_updates_share_messages_and_keep_their_order(remote: Remote) -> None:
    """300 updates of one display: frames ride with stdout's own flushes (a handful of
    messages, not 300), in order, after stderr written before them."""
    _, kc, _ = remote
    nonce = installed_nonce(kc)
    code = (
        "import sys\nprint('out')\nsys.stderr.write('err\\n')\n"
        "h = display('0', display_id=True)\nfor i in range(300):\n    h.update(str(i))"
    )
    streams = run_streams(kc, nonce, code)
    assert len(streams) < 30
    first_frame = next(i for i, (_, text) in enumerate(streams) if "\x1b]BAI;" in text)
    assert ("stderr", "err\n") in streams[:first_frame]
    decoder = FrameDecoder(nonce)
    text = "".join(t for name, t in streams if name == "stdout")
    parts = decoder.feed(text) + decoder.flush()
    assert "".join(p for p in parts if isinstance(p, str)) == "out\n"
    shown = [msg for msg in map(frame_message, [p for p in parts if isinstance(p, Frame)]) if msg]
    values = [m.content["data"]["text/plain"] for m in shown]
    assert values == ["'0'"] + [repr(str(i)) for i in range(300)]
