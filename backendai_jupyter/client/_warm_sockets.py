"""The pool of pre-opened execute websockets, one per session."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ._exceptions import BackendAIError
from ._http import WebSocket

if TYPE_CHECKING:
    from ._core import ClientCore

__all__ = ["WarmSockets"]


class WarmSockets:
    """Pre-opened execute websockets, one per session, to save a handshake per cell.

    The manager's ``/stream/session/{id}/execute`` handshake costs about as much as a trivial
    run itself (session lookup and auth before the upgrade), and a connection carries exactly one
    run. After a run finishes the next connection is opened in the background; the next
    execute uses it if it is still open, else opens a fresh one. A server that keeps the socket
    of a finished run open for the next run (the embedded endpoint, ``_exec_stream.REUSE``)
    saves even that: the socket itself waits here for the next run. A pre-opened (or kept)
    socket is never trusted: if it fails in any way before the first answer frame (closed by
    the server, cut by a manager restart, an error on send or receive), the code is sent again
    on a fresh one.
    """

    def __init__(self, client: ClientCore, enabled: bool = True) -> None:
        self._client = client
        self.enabled = enabled
        self._pending: dict[str, asyncio.Future[WebSocket]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def finished(self, session: str, ws: WebSocket, reusable: bool) -> None:
        """The socket of a run that finished: kept for the session's next run when the server
        keeps it open (``reusable``, see ``_exec_stream.REUSE``), else closed in the background
        (the answer is complete: the closing round trip need not hold up the cell)."""
        if reusable and self.enabled and not ws.closed:
            previous = self._pending.pop(session, None)
            kept = asyncio.get_running_loop().create_future()
            kept.set_result(ws)
            self._pending[session] = kept
            if previous is not None:
                self._close_later(previous)
            return
        self._close_later(ws)

    def _close_later(self, ws: WebSocket | asyncio.Future[WebSocket]) -> None:
        async def close() -> None:
            sock = ws
            if not isinstance(sock, WebSocket):
                try:
                    sock = await sock
                except (BackendAIError, asyncio.CancelledError):
                    return
            await sock.close()

        task = asyncio.ensure_future(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def prepare(self, session: str) -> None:
        if not self.enabled or session in self._pending:
            return
        path = f"/stream/session/{session}/execute"
        self._pending[session] = asyncio.ensure_future(self._client.http.ws_connect(path))

    async def take(self, session: str) -> WebSocket | None:
        task = self._pending.pop(session, None)
        if task is None:
            return None
        try:
            # Shielded: a cancel of our caller must reach our caller (not be taken for a
            # pre-opened connection that failed), and must not cancel the connection half-way.
            ws = await asyncio.shield(task)
        except BackendAIError:
            return None
        except asyncio.CancelledError:
            if task.cancelled():
                return None  # the pre-opened connection was given up elsewhere
            self._close_later(task)  # our caller was cancelled: nobody will use this socket
            raise
        return None if ws.closed else ws

    async def discard(self, session: str) -> None:
        ws = await self.take(session)
        if ws is not None:
            await ws.close()

    async def close(self) -> None:
        for session in list(self._pending):
            await self.discard(session)
        await asyncio.gather(*self._closing, return_exceptions=True)
