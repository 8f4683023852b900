"""Receiving the session kernel's messages cheaply: one pending receive, no poller per message.

``jupyter_client``'s ``get_iopub_msg(timeout)`` polls before it receives, and a zmq.asyncio
poll builds a poller (and a shadow socket) every time: for a trivial cell, whose four iopub
messages (busy, execute_input, the reply frame, idle) each cost one, that was about a seventh
of the endpoint's work. Here the receive itself is awaited, with the same timeout; the message
is read and checked by the channel's own session, as ``jupyter_client`` does.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["next_message"]


async def next_message(channel: Any, timeout: float) -> dict[str, Any] | None:
    """The next message on a ``jupyter_client`` zmq.asyncio channel (``kc.iopub_channel``,
    ``kc.stdin_channel``), or None when none came within ``timeout`` seconds."""
    receiving = channel.socket.recv_multipart()
    try:
        done, _ = await asyncio.wait({receiving}, timeout=timeout)
    except BaseException:
        receiving.cancel()
        raise
    if not done:
        receiving.cancel()
        return None
    _, frames = channel.session.feed_identities(receiving.result())
    message: dict[str, Any] = channel.session.deserialize(frames)
    return message
