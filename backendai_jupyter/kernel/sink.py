"""The proxy kernel's :class:`~..workspace.Sink`: one run's output published on iopub.

The execution path (:func:`~..workspace.relay`) runs on the workspace's loop, in its own thread,
so a sink carries everything the kernel's context variables would otherwise supply: the parent
header (the cell's ``execute_request``, or any message a hidden run should answer to), the
stdin ident, the execution count. Publishing from that thread is safe: ipykernel's iopub socket
queues every send onto its I/O thread in order, the path ipykernel's own output streams take.

A remote ``input()`` is asked on the front-end's stdin channel from that thread too
(:class:`StdinChannel`): the kernel's own thread only awaits the cell meanwhile and never
touches the stdin socket, and the answer is awaited on the socket's readiness, not polled.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import zmq
import zmq.asyncio

from ..richchannel import IopubMessage

__all__ = ["REPLY_GAP", "IOPubSink", "KernelLike", "StdinChannel"]

REPLY_GAP = 0.05
"""Seconds between a cell's last widget-related message and its ``execute_reply``.

nbclient answers output captured by an ``Output`` widget with a ``comm_msg`` on the shell
socket it is polling for the reply; when the reply is already there, that send can swallow the
socket's wake-up, and the cell then "takes" nbclient's whole cell timeout (jupyter/nbclient#312).
A local ipykernel's reply usually trails such output by the time its cell takes to return; the
proxy's output and reply come from one answer, so the gap is made here (widget cells only)."""


class KernelLike(Protocol):
    session: Any
    iopub_socket: Any


class StdinChannel:
    """``input_request`` → ``input_reply`` on the kernel's stdin socket, awaited on the loop
    that calls :meth:`ask` (the workspace's; one question at a time)."""

    def __init__(self, session: Any, socket: zmq.Socket[Any]) -> None:
        self.session = session
        self.socket = socket
        self._readable: zmq.asyncio.Socket | None = None

    async def ask(self, prompt: str, password: bool, parent: dict[str, Any], ident: Any) -> str:
        """The front-end's answer ("" if it is malformed). Cancel it to stop waiting."""
        while True:  # purge stale replies (an earlier question's, answered after it ended)
            try:
                self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError as e:
                if e.errno == zmq.EAGAIN:
                    break
                raise
        content = {"prompt": prompt, "password": password}
        self.session.send(self.socket, "input_request", content, parent, ident=ident)
        if self._readable is None:  # the same socket, watched by this loop
            self._readable = zmq.asyncio.Socket.from_socket(self.socket)
        while True:
            await self._readable.poll()  # readable (POLLIN), however long it takes
            _ident, reply = self.session.recv(self.socket, zmq.NOBLOCK)
            if reply is not None:
                try:
                    return str(reply["content"]["value"])
                except (KeyError, TypeError):
                    return ""


class IOPubSink:
    """Publishes with ``parent`` as the parent header; ``silent`` runs publish nothing."""

    def __init__(
        self,
        kernel: KernelLike,
        parent: dict[str, Any],
        *,
        silent: bool = False,
        stdin: StdinChannel | None = None,
        ident: Any = None,
        outgoing: Callable[[IopubMessage, dict[str, Any]], IopubMessage] | None = None,
    ) -> None:
        self.kernel = kernel
        self.outgoing = outgoing  # comm messages pass the comm bridge (:mod:`.comms`)
        self.parent = parent
        self.silent = silent
        self.stdin = stdin  # None: the front-end takes no input for this cell
        self.ident = ident
        # When the last message went out once this cell had widget traffic (None: it had none).
        self.widget_traffic_at: float | None = None

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
        if msg_type.startswith("comm_") or self.widget_traffic_at is not None:
            self.widget_traffic_at = time.monotonic()  # (output after it may be captured)
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

    async def settle(self) -> None:
        """Wait out what is left of :data:`REPLY_GAP` before the cell's reply goes out."""
        if self.widget_traffic_at is not None:
            left = self.widget_traffic_at + REPLY_GAP - time.monotonic()
            if left > 0:
                await asyncio.sleep(left)

    async def ask(self, prompt: str, password: bool) -> str | None:
        if self.stdin is None:
            return None
        return await self.stdin.ask(prompt, password, self.parent, self.ident)

    def notice(self, event: object) -> None:
        """Client events the execution path rendered itself or that have no output."""

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
