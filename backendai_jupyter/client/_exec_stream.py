"""The execute websocket's messages: sending the code, receiving, checking one frame."""

from __future__ import annotations

from typing import Any

from ._exceptions import ClientError, ProtocolError, RequestTimeout
from ._http import WebSocket, WSMessage

__all__ = [
    "LIVENESS_EVERY",
    "REUSE",
    "StaleSocket",
    "StreamLost",
    "execute_frame",
    "receive_message",
    "send_code",
]

LIVENESS_EVERY = 10.0  # seconds of silent ``continued`` answers between session status checks
REUSE = "reuse"
"""The embedded endpoint's extension of the execute websocket: a run's code message says
``"reuse": true`` (any client may: a stock manager ignores the key and closes the socket after
the run, as always), and a server that keeps the socket open for the session's next run says
``"reuse": true`` in the run's ``finished`` frame. A cell then costs no handshake, no closing
round trip and no new connection on either side."""


class StaleSocket(Exception):
    """A pre-opened websocket was closed by the server before it carried anything."""


class StreamLost(Exception):
    """The execute websocket ended before the run finished; the run cannot be continued."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def execute_frame(msg: WSMessage) -> dict[str, Any]:
    """The answer one execute-stream message carries (not a close). Pure."""
    if msg.kind != "text":
        raise ProtocolError("execution stream: unexpected binary frame")
    frame = msg.json()
    if not isinstance(frame, dict):
        raise ProtocolError(f"execution stream: unexpected frame {frame!r:.80}")
    if frame.get("status") == "server-restarting":
        raise StreamLost(
            "the manager restarted during the run, and a websocket run cannot be "
            "continued (the manager never tells its run id)"
        )
    return frame


async def send_code(ws: WebSocket, body: dict[str, Any], *, stale_ok: bool) -> None:
    """Send a run's code; :class:`StaleSocket` when a pre-opened socket fails."""
    try:
        await ws.send_json(body)
    except ClientError:
        if stale_ok:
            raise StaleSocket from None
        raise


async def receive_message(ws: WebSocket, *, stale: bool) -> WSMessage | None:
    """The next message, or None after a silent stretch.

    ``stale``: nothing came yet on a pre-opened socket, so a failure means it died unused.
    """
    try:
        msg = await ws.receive(timeout=LIVENESS_EVERY)
    except RequestTimeout:
        return None
    except ClientError as e:
        if stale:
            raise StaleSocket from None
        raise StreamLost(f"the execution stream broke ({e})") from None
    if msg.kind == "closed" and stale:
        raise StaleSocket
    return msg
