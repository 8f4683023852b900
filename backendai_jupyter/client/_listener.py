"""A listening TCP socket whose connections come out raw: accepted in the readiness callback.

``loop.create_server`` wraps every accepted connection in a transport and a protocol (a task,
``connection_made`` and a reader registration, three loop iterations before our code sees it).
The app proxy's same-machine path has no use for either: it relays between raw sockets.
:class:`Listener` binds like ``create_server`` (every address ``host`` resolves to) and calls
``on_accept(sock)`` with each non-blocking connection the moment it is accepted; a connection
that needs a transport after all gets one from ``loop.connect_accepted_socket``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

__all__ = ["Listener"]

log = logging.getLogger(__name__)

_BACKLOG = 100  # as asyncio's servers
_RETRY_DELAY = 0.5  # seconds without accepting after an error such as EMFILE


class Listener:
    """``host:port`` listening; ``sockets``, ``close()``, ``is_serving()``, ``wait_closed()``
    as an ``asyncio.Server``."""

    def __init__(self, sockets: list[socket.socket], on_accept: Callable[[socket.socket], None]):
        self.sockets = sockets
        self._on_accept = on_accept
        self._loop = asyncio.get_running_loop()
        self._serving = True
        for sock in sockets:
            self._loop.add_reader(sock.fileno(), self._ready, sock)

    @classmethod
    async def open(
        cls, host: str, port: int, on_accept: Callable[[socket.socket], None]
    ) -> Listener:
        """Listen on every address of ``host`` (``OSError`` when one cannot be bound)."""
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        sockets: list[socket.socket] = []
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(_BACKLOG)
                sock.setblocking(False)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return cls(sockets, on_accept)

    def _ready(self, listener: socket.socket) -> None:
        for _ in range(_BACKLOG):  # then let the loop serve the others
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as e:  # out of descriptors: pause instead of spinning on readiness
                log.warning("app proxy: accept failed: %s", e)
                self._loop.remove_reader(listener.fileno())
                self._loop.call_later(_RETRY_DELAY, self._resume, listener)
                return
            conn.setblocking(False)
            self._on_accept(conn)

    def _resume(self, listener: socket.socket) -> None:
        if self._serving:
            self._loop.add_reader(listener.fileno(), self._ready, listener)

    def is_serving(self) -> bool:
        return self._serving

    def close(self) -> None:
        if not self._serving:
            return
        self._serving = False
        for sock in self.sockets:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(sock.fileno())
            sock.close()

    async def wait_closed(self) -> None:
        """Nothing to wait for: the sockets are closed by :meth:`close`."""
