"""A magic's live output: what the workspace loop tells the magic's thread, and where it goes.

Runs execute on the workspace loop and never touch ``sys.stdout`` or IPython's display
machinery. Their output goes through the one execution path (:func:`~..workspace.relay`) into
an :class:`EmitSink`, which posts :data:`Note` items to the magic's thread
(:class:`~..workspace.loop.Inbox`); there a :class:`Screen` shows them in the cell that asked.
That keeps output in the right cell (ipykernel routes output by the calling thread's parent
message) and lets ``input()`` in remote code be answered with the notebook's own prompt.

Under a Jupyter kernel the :class:`Screen` publishes with the proxy kernel's own renderer
(:class:`~..kernel.sink.IOPubSink`: every message type, ``comm_*`` included, with its metadata
and binary buffers), status lines too, so everything arrives in order on one channel. Without a
kernel (a terminal IPython) it falls back to ``sys.stdout``/``sys.stderr`` and IPython's display
publisher.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from IPython.display import clear_output, publish_display_data

from ..client import StepFinished
from ..display.outputs import Message
from ..kernel.sink import IOPubSink
from .results import CaseResult

__all__ = [
    "CaseDone",
    "CaseStarted",
    "CaseWaiting",
    "Emit",
    "EmitSink",
    "InputRequest",
    "Note",
    "Screen",
    "Show",
    "Status",
    "answer_input",
    "render_message",
]


@dataclass(frozen=True)
class Status:
    """A status line (``✓ Session ... is ready``), shown on stderr."""

    text: str


@dataclass(frozen=True)
class Show:
    """One Jupyter output message produced by the remote code."""

    message: Message
    metadata: dict[str, Any] | None = None
    buffers: Sequence[bytes] | None = None


@dataclass(frozen=True)
class InputRequest:
    """The remote code called ``input()``: answer with ``reply`` (a future on the loop)."""

    prompt: str
    password: bool
    reply: asyncio.Future[str]


@dataclass(frozen=True)
class CaseStarted:
    index: int


@dataclass(frozen=True)
class CaseDone:
    case: CaseResult


@dataclass(frozen=True)
class CaseWaiting:
    """A sweep case's session waits to be scheduled: why (see ``client.scheduling``)."""

    index: int
    why: str


Note = Status | Show | InputRequest | CaseStarted | CaseDone | CaseWaiting
Emit = Callable[[Note], None]


class EmitSink:
    """The magics' :class:`~..workspace.Sink`: collects a run's messages; when ``live``, also
    emits them (and input requests) to the magic's thread. A sweep case is not live: an
    ``input()`` there gets an empty line."""

    def __init__(self, emit: Emit, live: bool, quiet: bool) -> None:
        self.emit = emit
        self.live = live
        self.quiet = quiet
        self.messages: list[Message] = []
        self.error: dict[str, Any] | None = None

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] | None = None,
    ) -> None:
        message = (msg_type, content)
        if msg_type == "error":
            self.error = content
        self.messages.append(message)
        if self.live:
            self.emit(Show(message, metadata, buffers))

    async def ask(self, prompt: str, password: bool) -> str | None:
        if not self.live:
            return ""
        reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.emit(InputRequest(prompt, password, reply))
        return await reply

    def notice(self, event: object) -> None:
        if isinstance(event, StepFinished) and event.step == "build" and event.exit_code:
            if self.live and not self.quiet:
                self.emit(Status(f"✗ build failed (exit code {event.exit_code})"))


def render_message(message: Message) -> None:
    """Show one ``(msg_type, content)`` output message without a kernel (terminal IPython)."""
    msg_type, content = message
    if msg_type == "stream":
        stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
        stream.write(str(content.get("text", "")))
        stream.flush()
    elif msg_type in ("display_data", "update_display_data", "execute_result"):
        kwargs: dict[str, Any] = {}
        if content.get("transient"):
            kwargs["transient"] = content["transient"]
        if msg_type == "update_display_data":
            kwargs["update"] = True
        publish_display_data(  # type: ignore[no-untyped-call]
            data=content.get("data", {}), metadata=content.get("metadata") or {}, **kwargs)
    elif msg_type == "error":
        print("\n".join(content.get("traceback") or [content.get("ename", "Error")]),
              file=sys.stderr)
    elif msg_type == "clear_output":
        clear_output(wait=bool(content.get("wait")))  # type: ignore[no-untyped-call]


def answer_input(note: InputRequest, text: str) -> None:
    """Hand an ``input()`` answer back to the loop that waits for it."""
    def settle() -> None:
        if not note.reply.done():
            note.reply.set_result(text)

    note.reply.get_loop().call_soon_threadsafe(settle)


class Screen:
    """Shows notes in the current cell; call it on the magic's thread (see the module
    docstring)."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self._line_start = True  # the last remote stream text ended its line

    def _iopub(self) -> IOPubSink | None:
        """The kernel's renderer with this cell's parent header; ``None`` without a kernel."""
        kernel = getattr(self.shell, "kernel", None)
        if kernel is None or getattr(kernel, "iopub_socket", None) is None:
            return None
        return IOPubSink(kernel, kernel.get_parent("shell"))

    def begin(self) -> None:
        """Before live output: what this thread printed so far comes first."""
        sys.stdout.flush()
        sys.stderr.flush()

    def status(self, text: str) -> None:
        """One status line on stderr (after what this thread printed so far)."""
        self.begin()
        self._publish(("stream", {"name": "stderr", "text": text + "\n"}), None, None)

    def show(self, note: Note) -> None:
        if isinstance(note, Status):
            # on a line of its own, also when the remote output did not end its last line
            self.status(note.text if self._line_start else "\n" + note.text)
            self._line_start = True
        elif isinstance(note, Show):
            msg_type, content = note.message
            if msg_type == "stream" and content.get("text"):
                self._line_start = str(content["text"]).endswith("\n")
            self._publish(note.message, note.metadata, note.buffers)
        elif isinstance(note, InputRequest):
            ask = getpass.getpass if note.password else input
            answer_input(note, ask(note.prompt))

    def _publish(
        self, message: Message, metadata: dict[str, Any] | None, buffers: Sequence[bytes] | None
    ) -> None:
        iopub = self._iopub()
        if iopub is None:
            render_message(message)
        else:
            iopub.publish(message[0], message[1], metadata=metadata, buffers=buffers)
