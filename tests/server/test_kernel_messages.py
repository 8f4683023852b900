"""``next_message``: a kernel channel's next message, or None after the timeout."""

from __future__ import annotations

import asyncio
import contextlib
import time

import zmq
import zmq.asyncio
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.session import Session

from backendai_jupyter.server.agent.kernel_messages import next_message


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
