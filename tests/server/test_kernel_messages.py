"""``next_message``: a kernel channel's next message, or None after the timeout;
``parse_message``: its frames checked and read as ``Session.deserialize`` does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
import zmq
import zmq.asyncio
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.session import Session

from backendai_jupyter.server.agent.kernel_messages import next_message, parse_message


async def test_next_message_reads_signed_messages_and_times_out() -> None:
    ctx = zmq.asyncio.Context()
    session = Session(key=b"secret")
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind("inproc://kernel-messages")
    push.connect("inproc://kernel-messages")
    channel = AsyncZMQSocketChannel(pull, session)
    try:
        start = time.monotonic()
        assert await next_message(channel, 0.05) is None
        assert time.monotonic() - start >= 0.05
        parent = session.msg("execute_request", {"code": "pass"})
        for state in ("busy", "idle"):
            session.send(push, "status", {"execution_state": state}, parent=parent)
        got = [await next_message(channel, 5) for _ in range(2)]
        assert [m["content"]["execution_state"] for m in got if m] == ["busy", "idle"]
        assert all(m and m["parent_header"]["msg_id"] == parent["header"]["msg_id"] for m in got)
        # A receive that timed out took nothing away: the next message still arrives.
        assert await next_message(channel, 0.01) is None
        session.send(push, "stream", {"name": "stdout", "text": "x"}, parent=parent)
        late = await next_message(channel, 5)
        assert late is not None and late["content"]["text"] == "x"
        # Cancelling the waiting task cancels the receive too.
        waiting = asyncio.ensure_future(next_message(channel, 5))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        session.send(push, "stream", {"name": "stdout", "text": "y"}, parent=parent)
        again = await next_message(channel, 5)
        assert again is not None and again["content"]["text"] == "y"
    finally:
        pull.close(linger=0)
        push.close(linger=0)
        ctx.term()


def _frames(session: Session, msg_type: str = "status") -> list[bytes]:
    msg = session.msg(msg_type, {"execution_state": "idle"}, parent={"header": {"msg_id": "p"}})
    return list(session.serialize(msg)[1:])  # after the delimiter


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (None, None),
        (lambda f: f[:4], "at least 5 frames"),
        (lambda f: [b"0" * len(f[0]), *f[1:]], "invalid signature"),
        (lambda f: [b"", *f[1:]], "unsigned"),
        (lambda f: [f[0], f[1], f[2], f[3], f[4].replace(b"idle", b"busy")], "invalid signature"),
    ],
)
def test_parse_message_checks_like_deserialize(change: Any, error: str | None) -> None:
    session = Session(key=b"secret")
    frames = _frames(session)
    if change is not None:
        frames = change(frames)
    if error is not None:
        with pytest.raises(ValueError, match=error):
            parse_message(session, frames)
        with pytest.raises(ValueError):  # jupyter_client agrees that it is bad
            session.deserialize(frames)
        return
    ours, theirs = parse_message(session, frames), session.deserialize(frames)
    for key in ("msg_id", "msg_type", "parent_header", "metadata", "content"):
        assert ours[key] == theirs[key], key
    assert ours["header"]["msg_id"] == theirs["header"]["msg_id"]
    assert isinstance(ours["header"]["date"], str)  # left as the kernel wrote it


def test_parse_message_without_a_key_takes_any_signature() -> None:
    session = Session(key=b"")
    frames = _frames(session, "stream")
    assert parse_message(session, [b"anything", *frames[1:]])["msg_type"] == "stream"
