"""The one execution path: a client :class:`~..client.Execution` → Jupyter output messages.

Kernel cells, ``%%backendai run``, ``%backendai run -c``, sweeps and hidden helper runs all go
through :func:`relay`: it iterates the run's typed events, decodes the rich channel (frames in
the remote stdout, :class:`~..richchannel.FrameDecoder`), maps console records
(:func:`~..display.outputs.console_to_messages`) and hands every message to a :class:`Sink`.

Seams for what plugs in here:

* **Where messages go** is the sink's business: the proxy kernel publishes on iopub with the
  cell's parent header; the magics render through IPython's display machinery in the cell's
  thread; a hidden run collects nothing but its non-output frames. ``publish`` takes message
  ``metadata`` and binary ``buffers`` besides the content.
* **Frames → messages** is :func:`~..richchannel.frame_message` (any iopub message the
  remote kernel sent, with metadata and buffers); the remote ``execute_reply`` frame is kept in
  :attr:`Outcome.remote_reply`, other frames it does not map (``ready``, ``reply``, ...) in
  :attr:`Outcome.frames`, for the caller.
* **Events this path does not map itself** (batch steps, and whatever new typed events the
  client grows: retry/outage notices) go to ``Sink.notice``; a sink renders those it knows and
  ignores the rest.
* **Outages**: while the manager is unreachable the run yields ``Reconnecting`` / ``Resumed``
  (and ``OutputLost`` when the server lost the run); the path renders them itself as ONE status
  line updated in place plus a loss note (:mod:`.outage_status`), for kernel cells and
  magics alike, and also hands them to ``Sink.notice`` (the kernel tracks the outage with them).
* **input()**: ``Sink.ask`` answers, or returns ``None`` when nobody can (the remote code then
  gets a clear ``EOFError``).

Output already received is never lost: if the run fails half-way, what the decoder still holds
is published before the error propagates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..client import Execution, Finished, Output, OutputLost, Reconnecting, Resumed, WaitingInput
from ..display.outputs import console_to_messages
from ..richchannel import EOF_REPLY, Frame, FrameDecoder, IopubMessage, frame_message
from .outage_status import OutageStatus

__all__ = ["Outcome", "Sink", "relay"]

_STDERR_TAIL = 64 * 1024


class Sink(Protocol):
    """Where one run's output goes."""

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] | None = None,
    ) -> None:
        """Show one output message (``stream``, ``display_data``, ``error``, ...)."""

    async def ask(self, prompt: str, password: bool) -> str | None:
        """Answer the remote ``input()``; ``None``: no one can (an ``EOFError`` remotely)."""

    def notice(self, event: object) -> None:
        """A client event this path does not map to output itself (render it or ignore it)."""


@dataclass
class Outcome:
    """What one run produced besides its output messages."""

    exit_code: int | None = None
    error: dict[str, Any] | None = None
    """The content of the last ``error`` message (a structured remote exception), if any."""
    stderr_tail: str = ""
    """The end of the plain stderr text (a traceback, when there is no rich channel)."""
    frames: list[Frame] = field(default_factory=list)
    """Frames that are not output (``ready``, ``reply``, ...), for the caller."""
    remote_reply: Frame | None = None
    """The remote kernel's ``execute_reply`` frame (payloads, user_expressions), if any."""
    text: list[str] = field(default_factory=list)
    """Plain stdout text, kept only when :func:`relay` is asked to (hidden runs)."""


class _Relay:
    def __init__(
        self, sink: Sink, nonce: str | None, count: int | None, keep_text: bool
    ) -> None:
        self.sink = sink
        self.count = count
        self.decoder = FrameDecoder(nonce) if nonce else None
        self.keep_text = keep_text
        self.outcome = Outcome()

    def message(self, msg: IopubMessage) -> None:
        if msg.msg_type == "error":
            self.outcome.error = msg.content
        elif msg.msg_type == "execute_result":
            msg.content["execution_count"] = self.count
        self.sink.publish(
            msg.msg_type,
            msg.content,
            metadata=msg.metadata or None,
            buffers=msg.buffers or None,
        )

    def stdout(self, text: str) -> None:
        if self.keep_text:
            self.outcome.text.append(text)
        else:
            self.sink.publish("stream", {"name": "stdout", "text": text})

    def parts(self, parts: list[str | Frame]) -> None:
        for part in parts:
            if isinstance(part, str):
                self.stdout(part)
                continue
            if part.type == "execute_reply":
                self.outcome.remote_reply = part
                continue
            msg = frame_message(part, self.count)
            if msg is None:
                self.outcome.frames.append(part)
            else:
                self.message(msg)

    def output(self, ev: Output) -> None:
        kind, data = ev.item.kind, ev.item.data
        if kind == "stdout" and isinstance(data, str):
            if self.decoder is not None:
                self.parts(self.decoder.feed(data))
            elif data:
                self.stdout(data)
            return
        if kind == "stderr" and isinstance(data, str):
            self.outcome.stderr_tail = (self.outcome.stderr_tail + data)[-_STDERR_TAIL:]
        for msg_type, content in console_to_messages(kind, data):
            self.message(IopubMessage(msg_type, content))

    def flush(self) -> None:
        if self.decoder is not None:
            self.parts(self.decoder.flush())


async def relay(
    run: Execution,
    sink: Sink,
    *,
    nonce: str | None = None,
    execution_count: int | None = None,
    keep_text: bool = False,
) -> Outcome:
    """Run ``run`` to its end, publishing its output on ``sink``; see the module docstring.

    ``nonce`` is the session's rich-channel nonce (``None``: plain console records only);
    ``execution_count`` goes into ``execute_result``; ``keep_text`` collects plain stdout in
    :attr:`Outcome.text` instead of publishing it (hidden runs).
    """
    r = _Relay(sink, nonce, execution_count, keep_text)
    status = OutageStatus()
    try:
        async for ev in run:
            if isinstance(ev, Output):
                r.output(ev)
            elif isinstance(ev, WaitingInput):
                r.flush()  # the prompt's own text is shown before the question
                answer = await sink.ask(ev.prompt, ev.is_password)
                if answer is None:
                    # The patched remote input() turns this into a descriptive EOFError; a plain
                    # remote ipykernel raises EOFError for "\x04".
                    answer = EOF_REPLY if nonce else "\x04"
                await run.send_input(answer)
            elif isinstance(ev, Finished):
                r.outcome.exit_code = ev.exit_code
            else:
                if isinstance(ev, (Reconnecting, Resumed, OutputLost)):
                    r.flush()  # output received before the outage comes first
                    for msg_type, content in status.messages(ev):
                        sink.publish(msg_type, content)
                sink.notice(ev)
    finally:
        r.flush()
    return r.outcome
