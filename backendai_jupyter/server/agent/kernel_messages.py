"""Receiving the session kernel's messages cheaply: one pending receive, no poller per message,
no waiting machinery for a message already there, and only the parsing the runner needs.

``jupyter_client``'s ``get_iopub_msg(timeout)`` polls before it receives, and a zmq.asyncio
poll builds a poller (and a shadow socket) every time: for a trivial cell, whose four iopub
messages (busy, execute_input, the reply frame, idle) each cost one, that was about a seventh
of the endpoint's work. Here the receive itself is awaited, with the same timeout (and not at
all when the message is already queued, as the three after ``busy`` usually are).

:func:`parse_message` checks the signature with the channel's own session as
``Session.deserialize`` does, but leaves out what the runner never reads and what cost a tenth
of the endpoint's work per cell (profiled): turning every header's date into a ``datetime``
(dateutil) and adapting messages of protocol versions before 5 (the session's kernel is ours).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Sequence
from typing import Any

__all__ = ["next_message", "parse_message"]


async def next_message(channel: Any, timeout: float) -> dict[str, Any] | None:
    """The next message on a ``jupyter_client`` zmq.asyncio channel (``kc.iopub_channel``,
    ``kc.stdin_channel``), or None when none came within ``timeout`` seconds."""
    receiving = channel.socket.recv_multipart()
    if not receiving.done():  # (pyzmq tries the receive at once: a queued message is there)
        try:
            done, _ = await asyncio.wait({receiving}, timeout=timeout)
        except BaseException:
            receiving.cancel()
            raise
        if not done:
            receiving.cancel()
            return None
    _, frames = channel.session.feed_identities(receiving.result())
    return parse_message(channel.session, frames)


def parse_message(session: Any, frames: Sequence[bytes]) -> dict[str, Any]:
    """A signed Jupyter message from its frames after the identities (``[signature, header,
    parent, metadata, content, *buffers]``), checked with ``session``'s key; ``ValueError``
    when it is short or its signature is wrong. Dates stay strings."""
    if len(frames) < 5:
        raise ValueError(f"a message has at least 5 frames, not {len(frames)}")
    signature, parts = frames[0], list(frames[1:5])
    if session.auth is not None:
        if not signature:
            raise ValueError("an unsigned message")
        if not hmac.compare_digest(signature, session.sign(parts)):
            raise ValueError("a message with an invalid signature")
    header, parent, metadata, content = (session.unpack(p) for p in parts)
    return {
        "header": header,
        "msg_id": header["msg_id"],
        "msg_type": header["msg_type"],
        "parent_header": parent,
        "metadata": metadata,
        "content": content,
        "buffers": list(frames[5:]),
    }
