"""Hidden runs and the rich channel's installation in a compute session.

Split from the kernel session because the magics install the rich channel in the sessions they
start too: running code nobody sees (:func:`run_hidden`), installing the rich channel
(:func:`install_rich`) and its live-output pump (:func:`install_live`) need a client and a
session id, not a :class:`~.kernel_session.KernelSession`.
"""

from __future__ import annotations

import logging
from typing import Any

from ..client import Client
from ..richchannel import bootstrap_code, read_ready, with_header
from ..richchannel.pump import live_code, read_flush_prefix
from .folder_upload import Answers
from .relay import Outcome, Sink, relay

__all__ = ["FeedSink", "HiddenSink", "install_live", "install_rich", "run_hidden"]

log = logging.getLogger(__name__)


class HiddenSink:
    """A sink for runs nobody sees (bootstrap, helpers): output is dropped."""

    def publish(
        self, msg_type: str, content: dict[str, Any], *, metadata: Any = None, buffers: Any = None
    ) -> None:
        pass

    async def ask(self, prompt: str, password: bool) -> str | None:
        return None

    def notice(self, event: object) -> None:
        pass


class FeedSink(HiddenSink):
    """A hidden run whose ``input()`` calls are answered by ``answers``; keeps its stdout."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.text: list[str] = []

    def publish(
        self, msg_type: str, content: dict[str, Any], *, metadata: Any = None, buffers: Any = None
    ) -> None:
        if msg_type == "stream":
            self.text.append(str(content.get("text", "")))

    async def ask(self, prompt: str, password: bool) -> str | None:
        return await self.answers()


async def run_hidden(
    client: Client,
    session_id: str,
    code: str,
    nonce: str | None,
    sink: Sink | None = None,
    *,
    allow_stdin: bool = False,
) -> Outcome:
    """Run ``code`` through the one execution path; by default nobody sees its output.

    With the rich channel the code goes with a ``silent`` header, so it leaves the remote
    execution count and history alone. Pass a ``sink`` (e.g. the kernel's, with a chosen parent
    header) to show its output somewhere. The returned :class:`Outcome` holds the non-output
    frames and, without a sink, the plain stdout text. ``allow_stdin``: the code may call
    ``input()``, answered by the sink's ``ask``.
    """
    code = with_header(code, nonce, silent=True, store_history=False, allow_stdin=allow_stdin)
    run = client.sessions.execute(session_id, code)
    return await relay(run, sink or HiddenSink(), nonce=nonce, keep_text=sink is None)


async def install_rich(client: Client, session_id: str) -> tuple[str, dict[str, Any]] | None:
    """Install the rich channel (:mod:`..richchannel`) in a session: its nonce and the
    ``ready`` frame (remote versions, ``language_info``), or ``None`` when the remote side is
    not IPython (plain console records then)."""
    outcome = await run_hidden(client, session_id, bootstrap_code(), None)
    text = "".join(outcome.text)
    found = read_ready(text)
    if found is None:
        log.info("rich channel not installed; remote said: %.300s", text)
        return None
    nonce, ready = found
    return nonce, ready.payload


async def install_live(client: Client, session_id: str, nonce: str | None) -> None:
    """Start a session's live-output pump (:mod:`..richchannel.pump`). Over REST it flushes:
    output every ~0.2 s instead of every 2 s, on the route that survives a manager restart (the
    websocket flushes every 0.2 s by itself). On both it reports threads that print while the
    kernel is idle (:mod:`.background`)."""
    client.sessions.set_flush_prefix(session_id, None)
    rest = client.config.execute_transport == "rest"
    outcome = await run_hidden(client, session_id, live_code(rest), nonce)
    prefix = read_flush_prefix("".join(outcome.text))
    if prefix is None:
        log.info("live output not installed; output comes every 2 s")
    client.sessions.set_flush_prefix(session_id, prefix)
