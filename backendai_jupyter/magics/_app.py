"""``%backendai app``: a local TCP port proxied to a session's service over the tcpproxy websocket.

Like the official ``backend.ai app`` (protocol.md §8.1): every accepted local connection opens
``GET /stream/session/{session}/tcpproxy?app={service}[&port=N]`` and relays raw bytes as binary
frames both ways. The listener lives on the background loop, so the kernel stays free;
:meth:`AppProxy.stop` closes the listener and every open tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from ..client import BackendAIError, Client, NotFoundError

__all__ = ["AppProxy", "parse_bind", "start_proxy"]

CHUNK = 256 * 1024


def parse_bind(text: str) -> tuple[str, int]:
    """``"9900"`` or ``"127.0.0.1:9900"`` → ``(host, port)``; raises ``ValueError``."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    value = int(port)
    if not 0 <= value <= 65535:
        raise ValueError(f"port out of range: {value}")
    return host, value


@dataclass
class AppProxy:
    """A running proxy; ``url`` is where the service answers locally."""

    session: str
    service: str
    host: str
    port: int
    protocol: str = "http"
    server: asyncio.base_events.Server | None = field(default=None, repr=False)
    tunnels: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    @property
    def url(self) -> str:
        scheme = self.protocol if self.protocol in ("http", "https") else "tcp"
        return f"{scheme}://{self.host}:{self.port}"

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
        for task in list(self.tunnels):
            task.cancel()
        await asyncio.gather(*self.tunnels, return_exceptions=True)


async def _pipe_tcp_to_ws(reader: asyncio.StreamReader, ws: Any) -> None:
    while True:
        data = await reader.read(CHUNK)
        if not data:
            return
        await ws.send_bytes(data)


async def _pipe_ws_to_tcp(ws: Any, writer: asyncio.StreamWriter) -> None:
    while True:
        msg = await ws.receive()
        if msg.kind == "closed":
            return
        data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
        writer.write(data)
        await writer.drain()


async def _tunnel(
    client: Client, proxy: AppProxy, params: dict[str, str],
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
) -> None:
    try:
        ws = await client.http.ws_connect(
            f"/stream/session/{proxy.session}/tcpproxy", params=params
        )
    except BackendAIError as e:
        body = f"WebSocket reply: {e}\n".encode()
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                     b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        with contextlib.suppress(Exception):
            await writer.drain()
        writer.close()
        return
    up = asyncio.create_task(_pipe_tcp_to_ws(reader, ws))
    down = asyncio.create_task(_pipe_ws_to_tcp(ws, writer))
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        await ws.close()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _service_protocol(client: Client, session: str, service: str) -> str:
    """Check the session offers ``service``; return its protocol."""
    try:
        apps = await client.http.json("GET", f"/stream/session/{session}/apps")
    except NotFoundError as e:
        raise BackendAIError(f"session {session!r}: cannot list its services ({e})") from None
    names = {str(a.get("name")): str(a.get("protocol", "tcp"))
             for a in apps or [] if isinstance(a, dict)}
    if service not in names:
        raise BackendAIError(
            f"session {session!r} has no service {service!r} "
            f"(available: {', '.join(sorted(names)) or 'none'})"
        )
    return names[service]


async def start_proxy(
    client: Client, session: str, service: str, host: str, port: int,
    container_port: int | None = None,
) -> AppProxy:
    """Check the service exists, then listen on ``host:port`` (0 = a free port)."""
    await client.connect()
    protocol = await _service_protocol(client, session, service)
    params = {"app": service}
    if container_port is not None:
        params["port"] = str(container_port)
    proxy = AppProxy(session, service, host, port, protocol)

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        proxy.tunnels.add(task)
        try:
            await _tunnel(client, proxy, params, reader, writer)
        finally:
            proxy.tunnels.discard(task)

    try:
        proxy.server = await asyncio.start_server(accept, host, port)
    except OSError as e:
        raise BackendAIError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    proxy.port = int(proxy.server.sockets[0].getsockname()[1])
    return proxy
