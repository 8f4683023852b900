"""The proxy kernel's :class:`~..workspace.Sink`: one run's output published on iopub.

The execution path (:func:`~..workspace.relay`) runs on the workspace's loop, in its own thread,
so a sink carries everything the kernel's context variables would otherwise supply: the parent
header (the cell's ``execute_request``, or any message a hidden run should answer to), the
stdin ident, the execution count. Publishing from that thread is safe: ipykernel's iopub socket
queues every send onto its I/O thread in order, the path ipykernel's own output streams take.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..richchannel import IopubMessage

__all__ = ["IOPubSink", "KernelLike"]


class KernelLike(Protocol):
    session: Any
    iopub_socket: Any

    async def stdin_request(
        self, prompt: str, password: bool, parent: dict[str, Any], ident: Any
    ) -> str: ...


class IOPubSink:
    """Publishes with ``parent`` as the parent header; ``silent`` runs publish nothing."""

    def __init__(
        self,
        kernel: KernelLike,
        parent: dict[str, Any],
        *,
        silent: bool = False,
        allow_stdin: bool = False,
        ident: Any = None,
        loop: asyncio.AbstractEventLoop | None = None,
        outgoing: Callable[[IopubMessage, dict[str, Any]], IopubMessage] | None = None,
        on_event: Callable[[object], None] | None = None,
    ) -> None:
        self.kernel = kernel
        self.outgoing = outgoing  # comm messages pass the comm bridge (:mod:`.comms`)
        self.parent = parent
        self.silent = silent
        self.allow_stdin = allow_stdin
        self.ident = ident
        self.loop = loop  # the kernel's loop, where stdin requests are made
        self.on_event = on_event  # outage events, for the kernel's own state (from the loop)

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] | None = None,
    ) -> None:
        if self.silent:
            return
        if self.outgoing is not None and msg_type.startswith("comm_"):
            msg = self.outgoing(
                IopubMessage(msg_type, content, metadata or {}, tuple(buffers or ())), self.parent
            )
            msg_type, content, metadata, buffers = (
                msg.msg_type,
                msg.content,
                msg.metadata,
                msg.buffers,
            )
        self.kernel.session.send(
            self.kernel.iopub_socket,
            msg_type,
            content,
            self.parent,
            None,
            list(buffers) if buffers else None,
            metadata=metadata,
        )

    async def ask(self, prompt: str, password: bool) -> str | None:
        if not self.allow_stdin or self.loop is None:
            return None
        request = self.kernel.stdin_request(prompt, password, self.parent, self.ident)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(request, self.loop))

    def notice(self, event: object) -> None:
        """Client events the execution path rendered or that have no output: the kernel tracks
        outages with them."""
        if self.on_event is not None:
            self.on_event(event)

    def progress(self) -> Progress:
        return Progress(self)


class Progress:
    """One updating status line (a display with a ``display_id``), e.g. session start-up."""

    def __init__(self, sink: IOPubSink) -> None:
        self.sink = sink
        self.display_id = f"backendai-{os.urandom(6).hex()}"
        self.shown = False

    def __call__(self, text: str) -> None:
        content = {
            "data": {"text/plain": text},
            "metadata": {},
            "transient": {"display_id": self.display_id},
        }
        self.sink.publish("update_display_data" if self.shown else "display_data", content)
        self.shown = True
