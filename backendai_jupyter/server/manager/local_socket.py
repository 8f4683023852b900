"""The endpoint's same-machine socket: descriptors instead of bytes, for loopback clients.

Moving a file or a TCP stream through HTTP and a websocket costs copies into and out of sockets
and the protocol around them, however the bytes are pumped (about a fifth of ``cp``, a third of
a direct connection, on a loaded 2-core machine). A client on this machine can do better: give
its open file to the endpoint, or take a socket already connected to the service. This module is
the channel for that: a Linux abstract Unix socket (``@backendai-jupyter-<random>``; the
network namespace's, so a session in its own namespace cannot reach it) taking one request line
per connection, optionally with one descriptor attached (``SCM_RIGHTS``), and answering JSON
lines, optionally with one descriptor (``{"status": S, "error": "..."}`` when refused).

Only processes of this endpoint's own user id get an answer (``SO_PEERCRED``), and every request
carries a credential the HTTP API issued (a storage token, an app ticket) checked by the same code
as HTTP: the socket grants nothing HTTP would not. The operations are registered by the modules
that own them (``storage/local_transfer.py``: ``upload``/``download``; ``appconnect.py``:
``connect``); clients learn the address from the HTTP answers that carry those credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from ...client._local_transfer import peer_uid
from ...client._relay import wait_ready
from .errors import Problem

__all__ = ["LOCAL_SOCKET", "LocalSocket", "Refused", "local_socket_ctx"]

log = logging.getLogger(__name__)

_MAX_LINE = 64 * 1024
_RECEIVE_TIMEOUT = 10.0


class Refused(Exception):
    """A request the socket will not serve: the answer line says why, with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Channel:
    """One client connection: its request, the descriptor it sent, and the way to answer."""

    def __init__(self, conn: socket.socket, request: dict[str, Any], fd: int) -> None:
        self.conn = conn
        self.request = request
        self.fd = fd  # -1: none came

    async def tell(self, answer: dict[str, Any]) -> bool:
        """One answer line; whether it went out (a client gone is no error: the operation
        stops where it stands, as an HTTP transfer cut mid-way)."""
        try:
            data = json.dumps(answer).encode() + b"\n"
            await asyncio.get_running_loop().sock_sendall(self.conn, data)
        except OSError:
            return False
        return True

    async def hand_over(self, answer: dict[str, Any], fd: int) -> None:
        """One answer line with ``fd`` attached (the client gets its own copy)."""
        line = json.dumps(answer).encode() + b"\n"
        try:  # a fresh connection takes a short line at once
            sent = socket.send_fds(self.conn, [line], [fd])
        except BlockingIOError:
            await wait_ready(self.conn.fileno(), write=True)
            sent = socket.send_fds(self.conn, [line], [fd])
        if sent != len(line):
            raise OSError("the answer line was cut short")


Operation = Callable[[web.Application, Channel], Awaitable[None]]


class LocalSocket:
    """The abstract socket and its connections; :meth:`start` / :meth:`close` with the app."""

    def __init__(self, app: web.Application, operations: dict[str, Operation]) -> None:
        self.app = app
        self.operations = operations
        self.address = f"@backendai-jupyter-{secrets.token_hex(8)}"
        self.listening = False
        self._listener: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind("\0" + self.address[1:])
            sock.listen(socket.SOMAXCONN)  # a burst of connections (a browser's) waits here
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._listener = sock
        self.listening = True
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept_ready)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self.listening = False
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None

    def _accept_ready(self) -> None:
        """Accept what waits, right in the readiness callback (a connection's request is
        served one loop iteration sooner than through ``sock_accept`` and a task)."""
        listener = self._listener
        while listener is not None:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of descriptors: pause rather than spin on readiness
                log.warning("same-machine socket: accept failed: %s", e)
                loop = asyncio.get_running_loop()
                loop.remove_reader(listener.fileno())
                loop.call_later(0.1, self._resume_accepting, listener)
                return
            if peer_uid(conn) != os.getuid():  # another user's process: not a word
                conn.close()
                continue
            conn.setblocking(False)
            self._spawn(self._serve(conn))

    def _resume_accepting(self, listener: socket.socket) -> None:
        if self._listener is listener:
            asyncio.get_running_loop().add_reader(listener.fileno(), self._accept_ready)

    async def _serve(self, conn: socket.socket) -> None:
        channel = Channel(conn, {}, -1)
        try:
            line, channel.fd = await _receive(conn)
            request = json.loads(line)
            if not isinstance(request, dict):
                raise Refused(400, "a request is one JSON object")
            channel.request = request
            operation = self.operations.get(str(request.get("op")))
            if operation is None:
                raise Refused(400, f"op must be one of {', '.join(sorted(self.operations))}")
            await operation(self.app, channel)
        except Refused as e:
            await channel.tell({"status": e.status, "error": str(e)})
        except Problem as p:
            await channel.tell({"status": p.status, "error": p.msg or p.title})
        except (OSError, asyncio.TimeoutError, ValueError) as e:
            log.debug("same-machine socket: %s", e)
            await channel.tell({"status": 500, "error": str(e)})
        finally:
            if channel.fd >= 0:
                os.close(channel.fd)
            conn.close()


async def _receive(conn: socket.socket) -> tuple[bytes, int]:
    """The request line and the descriptor that came with it (``-1``: none; more: refused)."""
    data, fds = b"", []
    while b"\n" not in data:
        try:  # the line is usually there already: no loop iteration lost waiting for it
            chunk, got, _, _ = socket.recv_fds(conn, 4096, 4)
        except BlockingIOError:  # a client that says nothing is dropped after a while
            await asyncio.wait_for(wait_ready(conn.fileno(), write=False), _RECEIVE_TIMEOUT)
            continue
        fds.extend(got)
        if not chunk or len(data) + len(chunk) > _MAX_LINE:
            break
        data += chunk
    if len(fds) > 1 or b"\n" not in data:
        for fd in fds:
            os.close(fd)
        raise ValueError("expected one request line with at most one descriptor")
    return data.split(b"\n", 1)[0], fds[0] if fds else -1


LOCAL_SOCKET: web.AppKey[LocalSocket] = web.AppKey("bjup_local_socket", LocalSocket)


def loopback(request: web.Request) -> bool:
    """Whether an HTTP client is on this machine (only such a client could use the socket)."""
    return request.remote in ("127.0.0.1", "::1")


def offered_address(request: web.Request) -> str | None:
    """The socket's address for an HTTP answer to ``request``: loopback clients only."""
    server = request.app.get(LOCAL_SOCKET)
    return server.address if server is not None and server.listening and loopback(request) else None


async def local_socket_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app[LOCAL_SOCKET]`` listens as long as the app runs (``cleanup_ctx``); a socket that
    cannot listen leaves HTTP alone to serve."""
    server = app[LOCAL_SOCKET]
    try:
        await server.start()
    except OSError as e:
        log.warning("same-machine socket off: %s", e)
    yield
    await server.close()
