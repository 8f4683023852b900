"""Output of remote threads while the kernel is idle (issue 18): delivered, never lost.

The stock runner forwards a kernel's output only while a run is active, for that run. The
rich channel's pump (``richchannel/remote/live.py``) holds what threads write while no run is
active, and at the end of every run tells the proxy (a ``b`` prompt) when threads that wrote
(or that the cell started lately) are still alive or output is held. Only then does the proxy
start a hidden **collector** run: it writes the held output out, then lets the threads' output
flow with it (live, through the pump's flushes over REST) until they have all ended. Any other
run on the session interrupts the collector first (``Sessions.stop_collector``, called by
every ``Execution``), and its own end restarts the collector when threads are still alive.

The output goes to the front-end with the parent header of the last cell the user ran (a local
ipykernel attributes a thread's output the same way: to the latest cell's parent). No thread
alive: no collector, no request at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from ..client import BackendAIError, Client, Execution
from ..richchannel import with_header
from ..richchannel.pump import collect_code
from .relay import Sink, relay

__all__ = ["BackgroundSink", "Collector"]

log = logging.getLogger(__name__)


class BackgroundSink:
    """A finished cell's sink, for its threads' output: no errors (an interrupt that ends the
    collector is not the cell's), no input."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] | None = None,
    ) -> None:
        if msg_type != "error":
            self.sink.publish(msg_type, content, metadata=metadata, buffers=buffers)

    async def ask(self, prompt: str, password: bool) -> str | None:
        return None

    def notice(self, event: object) -> None:
        pass


class Collector:
    """One kernel session's collector runs."""

    def __init__(self) -> None:
        self.sink: Sink | None = None
        """The sink of the last cell the user ran: where threads' output goes."""

    def after_run(self, client: Client, session_id: str, nonce: str | None) -> None:
        """After any run on the session: start a collector if the run said threads may print."""
        if not client.sessions.take_background(session_id) or self.sink is None:
            return
        code = with_header(collect_code(), nonce, silent=True, store_history=False,
                           allow_stdin=False)
        run = client.sessions.execute(session_id, code, collector=True)
        task = asyncio.ensure_future(self._collect(run, client, session_id, nonce))
        client.sessions.track_collector(session_id, task)

    async def _collect(
        self, run: Execution, client: Client, session_id: str, nonce: str | None
    ) -> None:
        assert self.sink is not None
        try:
            await relay(run, BackgroundSink(self.sink), nonce=nonce)
        except BackendAIError as e:
            log.debug("background output collector ended: %s", e)
            return
        if client.sessions.tracks_collector(session_id, asyncio.current_task()):
            self.after_run(client, session_id, nonce)  # ended by itself: new threads since?
