"""Local proxies to a session's services (protocol.md §8.1; the official ``backend.ai app``).

:class:`AppProxy` checks the session offers the service (``GET /stream/session/{id}/apps``),
listens on a local TCP port and, for **each accepted connection**, opens its own websocket
``GET /stream/session/{id}/tcpproxy?app=…[&port=N][&arguments=JSON][&envs=JSON]`` and relays raw
bytes as binary frames both ways: 256 KiB reads, every send waits for the transport to drain
(backpressure on both sides), websocket heartbeat pings every 30 s. When the websocket cannot be
opened or closes abnormally before any data came back (the manager's 1013 "try again later"
for a refused connection), the local client gets ``HTTP/1.1 503 … WebSocket reply: …`` as from
the official CLI.

    async with Client(cfg) as client:
        async with AppProxy(client, "mysess", "jupyter", port=0) as proxy:
            print(proxy.url)           # http://127.0.0.1:PORT from the app's url_template
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._exceptions import BackendAIError, NotFoundError
from ._models import ServicePort

if TYPE_CHECKING:
    from ._client import Client
    from ._http import WebSocket

__all__ = ["AppProxy", "list_apps", "parse_bind"]

CHUNK = 256 * 1024
DEFAULT_URL_TEMPLATE = "{protocol}://{host}:{port}"


def parse_bind(text: str) -> tuple[str, int]:
    """``"9900"`` or ``"127.0.0.1:9900"`` (``[::1]:9900``) → ``(host, port)``; ``ValueError``."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    value = int(port)
    if not 0 <= value <= 65535:
        raise ValueError(f"port out of range: {value}")
    return host, value


async def list_apps(client: Client, session: str) -> list[ServicePort]:
    """``GET /stream/session/{session}/apps`` as :class:`ServicePort` records."""
    await client.connect()
    data = await client.http.json("GET", f"/stream/session/{session}/apps")
    return [ServicePort.from_json(d) for d in data or [] if isinstance(d, dict)]


class AppProxy:
    """A local listener proxying ``service`` of ``session``; ``url`` is where it answers."""

    def __init__(
        self,
        client: Client,
        session: str,
        service: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        container_port: int | None = None,
        arguments: Mapping[str, Any] | None = None,
        envs: Mapping[str, str] | None = None,
        heartbeat: float | None = 30.0,
    ) -> None:
        self.client = client
        self.session = session
        self.service = service
        self.host = host
        self.port = port
        self.container_port = container_port
        self.arguments = dict(arguments or {})
        self.envs = dict(envs or {})
        self.heartbeat = heartbeat
        self.protocol = "tcp"
        self.url_template = DEFAULT_URL_TEMPLATE
        self.server: asyncio.base_events.Server | None = None
        self.tunnels: set[asyncio.Task[None]] = set()
        self.connections = 0  # accepted so far
        self.bytes_up = 0
        self.bytes_down = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> AppProxy:
        """Check the service exists, then listen (``port=0`` picks a free port)."""
        try:
            apps = await list_apps(self.client, self.session)
        except NotFoundError as e:
            raise BackendAIError(
                f"session {self.session!r}: cannot list its services ({e})"
            ) from None
        found = next((a for a in apps if a.name == self.service), None)
        if found is None:
            names = ", ".join(sorted(a.name for a in apps)) or "none"
            raise BackendAIError(
                f"session {self.session!r} has no service {self.service!r} (available: {names})"
            )
        if self.container_port is not None and self.container_port not in found.ports:
            raise BackendAIError(
                f"service {self.service!r} does not open port {self.container_port} "
                f"(ports: {', '.join(map(str, found.ports))})"
            )
        self.protocol = found.protocol
        self.url_template = found.url_template or DEFAULT_URL_TEMPLATE
        try:
            self.server = await asyncio.start_server(
                self._accept, self.host, self.port, limit=CHUNK
            )
        except OSError as e:
            raise BackendAIError(
                f"cannot listen on {self.host}:{self.port}: {e.strerror or e}"
            ) from None
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Close the listener and every open tunnel."""
        if self.server is not None:
            self.server.close()
        for task in list(self.tunnels):
            task.cancel()
        await asyncio.gather(*self.tunnels, return_exceptions=True)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)

    aclose = stop

    async def __aenter__(self) -> AppProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.is_serving()

    @property
    def url(self) -> str:
        scheme = "http" if self.protocol in ("http", "preopen") else "tcp"
        try:
            return self.url_template.format(protocol=scheme, host=self.host, port=self.port)
        except (KeyError, IndexError, ValueError):
            return DEFAULT_URL_TEMPLATE.format(protocol=scheme, host=self.host, port=self.port)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<AppProxy {self.session}/{self.service} at {self.url} ({state})>"

    def _repr_html_(self) -> str:
        import html

        url = html.escape(self.url)
        label = html.escape(f"{self.service} of {self.session}")
        if self.url.startswith(("http://", "https://")):
            return f'<a href="{url}" target="_blank" rel="noopener">Open {label}: {url}</a>'
        return f"<code>{label}: {url}</code>"

    # -- one connection -------------------------------------------------------------------------

    def _params(self) -> dict[str, str]:
        params = {"app": self.service}
        if self.container_port is not None:
            params["port"] = str(self.container_port)
        if self.arguments:
            params["arguments"] = json.dumps(self.arguments)
        if self.envs:
            params["envs"] = json.dumps(self.envs)
        return params

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tunnels.add(task)
        self.connections += 1
        try:
            await self._tunnel(reader, writer)
        except asyncio.CancelledError:
            pass
        finally:
            self.tunnels.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ws = await self.client.http.ws_connect(
                f"/stream/session/{self.session}/tcpproxy",
                params=self._params(),
                heartbeat=self.heartbeat,
            )
        except BackendAIError as e:
            await _reply_503(writer, str(e))
            return
        down = asyncio.create_task(self._downstream(ws, writer))
        up = asyncio.create_task(self._upstream(reader, ws))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (up, down):
                t.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            await ws.close()

    async def _upstream(self, reader: asyncio.StreamReader, ws: WebSocket) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(CHUNK):
                self.bytes_up += len(chunk)
                await ws.send_bytes(chunk)

    async def _downstream(self, ws: WebSocket, writer: asyncio.StreamWriter) -> None:
        received = False
        try:
            while True:
                msg = await ws.receive()
                if msg.kind == "closed":
                    code = msg.close_code
                    if not received and code not in (None, 1000, 1001):
                        await _reply_503(writer, f"websocket closed with code {code}")
                    return
                data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                received = True
                self.bytes_down += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, BackendAIError):
            return


async def _reply_503(writer: asyncio.StreamWriter, reason: str) -> None:
    body = f"WebSocket reply: {reason}".encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with contextlib.suppress(Exception):
        writer.write(head.encode() + body)
        await writer.drain()
