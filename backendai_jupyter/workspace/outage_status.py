"""A run's outage events as Jupyter messages: one status line updated in place, and loss notes.

While the manager is unreachable the client yields :class:`~..client.Reconnecting` events; a
front-end shows ONE line ("Backend.AI manager unreachable, retrying — 12 s") and updates it in
place (``display_data`` with a ``display_id``, then ``update_display_data``), and turns it into
"reconnected" on :class:`~..client.Resumed`. :class:`~..client.OutputLost` becomes a stderr note
saying from where output is missing. Pure: :class:`OutageStatus` only builds messages.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..client import OutputLost, Reconnecting, Resumed
from ..display.outputs import Message

__all__ = ["OutageStatus", "lost_text", "reconnecting_text", "resumed_text"]


def reconnecting_text(event: Reconnecting) -> str:
    return (
        f"Backend.AI manager unreachable ({event.reason}), retrying — {event.elapsed:.0f} s"
    )


def resumed_text(event: Resumed) -> str:
    return f"Backend.AI manager reachable again after {event.elapsed:.0f} s; the run goes on"


def lost_text(event: OutputLost) -> str:
    return f"[Backend.AI] output was lost {event.after}: {event.reason}\n"


def _bundle(text: str) -> dict[str, Any]:
    return {"text/plain": text}


class OutageStatus:
    """The status line of one cell: which messages to send for each outage event."""

    def __init__(self) -> None:
        self.display_id = f"backendai-outage-{secrets.token_hex(6)}"
        self.shown = False
        #: True between a :class:`Reconnecting` and the :class:`Resumed` that ends it.
        self.in_outage = False

    def messages(self, event: object) -> list[Message]:
        """The Jupyter messages for ``event`` (none for events that are not about outages)."""
        if isinstance(event, Reconnecting):
            self.in_outage = True
            return [self._line(reconnecting_text(event))]
        if isinstance(event, Resumed):
            self.in_outage = False
            return [self._line(resumed_text(event))] if self.shown else []
        if isinstance(event, OutputLost):
            return [("stream", {"name": "stderr", "text": lost_text(event)})]
        return []

    def _line(self, text: str) -> Message:
        content = {
            "data": _bundle(text),
            "metadata": {},
            "transient": {"display_id": self.display_id},
        }
        if self.shown:
            return ("update_display_data", content)
        self.shown = True
        return ("display_data", content)
