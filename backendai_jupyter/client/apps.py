"""Local proxies to a session's services (protocol.md §8.1; the official ``backend.ai app``).

:class:`AppProxy` checks the session offers the service (``GET /stream/session/{id}/apps``),
listens on a local TCP port and, for **each accepted connection**, opens its own websocket
``GET /stream/session/{id}/tcpproxy?app=…[&port=N][&arguments=JSON][&envs=JSON]`` and relays raw
bytes as binary frames both ways, websocket heartbeat pings every 30 s. The local socket is a
:class:`TcpPipe` (an ``asyncio.Protocol``: the transport's own reads go to the websocket as they
are, no ``StreamReader`` copies); reading pauses while more than ``HIGH_WATER`` bytes wait for a
slow websocket, and websocket frames are read only as fast as the local client takes them
(backpressure both ways, bounded memory). When the websocket cannot be
opened or closes abnormally before any data came back (the manager's 1013 "try again later"
for a refused connection), the local client gets ``HTTP/1.1 503 … WebSocket reply: …`` as from
the official CLI.

From an endpoint on this machine (the ``apps`` answer carries ``X-BackendAI-Local-Connect``, see
``server/manager/appconnect.py``) no byte crosses a websocket: the listener is a
:class:`~._listener.Listener` (raw sockets, accepted in the readiness callback), each connection
asks the endpoint's same-machine socket for a socket already connected to the service and
:mod:`._relay` pumps between the two; a connection the endpoint cannot serve falls back to the
websocket. ``connections`` counts the accepted connections, ``handed_over`` those relayed so.

    async with Client(cfg) as client:
        async with AppProxy(client, "mysess", "jupyter", port=0) as proxy:
            print(proxy.url)           # http://127.0.0.1:PORT from the app's url_template
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from ._exceptions import BackendAIError, NotFoundError
from ._listener import Listener
from ._local_transfer import LOCAL_CONNECT_HEADER, local_address, local_connect
from ._models import ServicePort
from ._relay import relay_pair

if TYPE_CHECKING:
    from ._core import ClientCore
    from ._http import WebSocket

__all__ = ["AppProxy", "TcpPipe", "list_apps", "parse_bind"]

HIGH_WATER = 1024 * 1024  # bytes read from a socket and not yet relayed before reading pauses
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


async def list_apps(client: ClientCore, session: str) -> list[ServicePort]:
    """``GET /stream/session/{session}/apps`` as :class:`ServicePort` records."""
    return (await _apps_and_offer(client, session))[0]


async def _apps_and_offer(
    client: ClientCore, session: str
) -> tuple[list[ServicePort], tuple[str, str] | None]:
    """The session's services and, from a same-machine endpoint, its local-connect offer
    (``X-BackendAI-Local-Connect: @NAME TICKET``: see :meth:`AppProxy._tunnel_local`)."""
    await client.connect()
    resp = await client.http.request("GET", f"/stream/session/{session}/apps")
    data = resp.json()
    apps = [ServicePort.from_json(d) for d in data or [] if isinstance(d, dict)]
    address, _, ticket = resp.headers.get(LOCAL_CONNECT_HEADER, "").partition(" ")
    address = local_address({"local_transfer": address}) or ""
    offer = (address, ticket) if address and ticket and client.config.local_transfers else None
    return apps, offer


class TcpPipe(asyncio.Protocol):
    """A TCP connection as a chunk source and sink, for relays (both ends of the app proxy).

    ``read()`` hands out the transport's reads as they came (up to 256 KiB each, no copies);
    reading pauses while ``high`` bytes or more are queued and resumes below half of it.
    ``write()`` goes straight to the transport; ``drain()`` waits while it is above its
    high-water mark. EOF from the peer is kept (half-close): ``read()`` returns ``b""`` and
    writing stays possible until ``write_eof()``/``close()``.
    """

    def __init__(self, high: int = HIGH_WATER) -> None:
        self.transport: asyncio.Transport | None = None
        self._high = high
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._eof = False
        self._lost = False
        self._reading_paused = False
        self._writing_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        loop = asyncio.get_running_loop()
        self._made: asyncio.Future[None] = loop.create_future()
        self._closed: asyncio.Future[None] = loop.create_future()

    # -- protocol callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._queued += len(data)
        if self._queued >= self._high and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return True  # keep the write side open

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = self._lost = True
        self._wake_reader()
        self._wake_writer()
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        waiter, self._read_waiter = self._read_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the relay's side -------------------------------------------------------------------

    async def connected(self) -> None:
        """Wait for ``connection_made`` (a server's protocol factory runs before it)."""
        await self._made

    async def read(self) -> bytes:
        """The next chunk the peer sent; ``b""`` at EOF (or once the connection is gone)."""
        while not self._chunks:
            if self._eof:
                return b""
            self._read_waiter = asyncio.get_running_loop().create_future()
            await self._read_waiter
        data = self._chunks.popleft()
        self._queued -= len(data)
        if self._reading_paused and self._queued < self._high // 2 and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        if self._lost or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("connection lost")
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport takes more (``ConnectionResetError`` once it is gone)."""
        while self._writing_paused and not self._lost:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter
        if self._lost:
            raise ConnectionResetError("connection lost")

    def write_eof(self) -> None:
        if self.transport is not None and not self._lost and self.transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                self.transport.write_eof()

    async def close(self, timeout: float = 5.0) -> None:
        """Close after what was written went out (abort after ``timeout``: a stuck peer)."""
        if self.transport is None:
            return
        self.transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), timeout)
        except asyncio.TimeoutError:
            self.transport.abort()


class AppProxy:
    """A local listener proxying ``service`` of ``session``; ``url`` is where it answers."""

    def __init__(
        self,
        client: ClientCore,
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
        self.server: asyncio.base_events.Server | Listener | None = None
        self.tunnels: set[asyncio.Task[None]] = set()
        self.connections = 0  # accepted so far
        self.handed_over = 0  # of them, relayed to a service socket the endpoint handed over
        self.bytes_up = 0
        self.bytes_down = 0
        #: A same-machine endpoint's ``(socket, ticket)``: connections join the service's
        #: socket in the kernel instead of crossing a websocket.
        self.local_offer: tuple[str, str] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> AppProxy:
        """Check the service exists, then listen (``port=0`` picks a free port)."""
        try:
            apps, self.local_offer = await _apps_and_offer(self.client, self.session)
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
            if self.local_offer is not None:  # raw sockets: the relay needs no transport
                self.server = await Listener.open(self.host, self.port, self._accepted)
            else:
                self.server = await asyncio.get_running_loop().create_server(
                    self._new_connection, self.host, self.port
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

    def _new_connection(self) -> TcpPipe:
        pipe = TcpPipe()
        task = asyncio.ensure_future(self._accept(pipe))
        self.tunnels.add(task)
        task.add_done_callback(self.tunnels.discard)
        return pipe

    def _accepted(self, sock: socket.socket) -> None:
        task = asyncio.ensure_future(self._accept_raw(sock))
        self.tunnels.add(task)
        task.add_done_callback(self.tunnels.discard)

    async def _accept(self, pipe: TcpPipe) -> None:
        self.connections += 1
        try:
            await pipe.connected()
            await self._tunnel(pipe)
        except asyncio.CancelledError:
            pass
        finally:
            await pipe.close()

    async def _accept_raw(self, sock: socket.socket) -> None:
        """A connection from the :class:`Listener`: relayed to a service socket from the
        endpoint, else (refused, endpoint gone) through the websocket as any other."""
        self.connections += 1
        pipe: TcpPipe | None = None
        try:
            if self.local_offer is not None and await self._tunnel_local(sock, *self.local_offer):
                return
            _, pipe = await asyncio.get_running_loop().connect_accepted_socket(TcpPipe, sock)
            await self._tunnel(pipe)
        except asyncio.CancelledError:
            pass
        finally:
            if pipe is not None:
                await pipe.close()
            else:
                sock.close()

    async def _tunnel(self, pipe: TcpPipe) -> None:
        try:
            ws = await self.client.http.ws_connect(
                f"/stream/session/{self.session}/tcpproxy",
                params=self._params(),
                heartbeat=self.heartbeat,
            )
        except BackendAIError as e:
            _reply_503(pipe, str(e))
            return
        down = asyncio.create_task(self._downstream(ws, pipe))
        up = asyncio.create_task(self._upstream(pipe, ws))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (up, down):
                t.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            await ws.close()

    async def _tunnel_local(self, local: socket.socket, address: str, ticket: str) -> bool:
        """Ask the endpoint's same-machine socket for a socket connected to the service and
        relay between the two (:mod:`._relay`); ``False`` (nothing read from ``local``)
        when it cannot give one, and the websocket tunnel serves this connection."""
        request = {"ticket": ticket, "app": self.service, "port": self.container_port,
                   "arguments": self.arguments or None, "envs": self.envs or None}
        service = await local_connect(address, request)
        if service is None:
            return False
        self.handed_over += 1
        try:
            await relay_pair(local, service, self._count_up, self._count_down)
        except OSError:
            pass
        finally:
            service.close()
        return True

    def _count_up(self, n: int) -> None:
        self.bytes_up += n

    def _count_down(self, n: int) -> None:
        self.bytes_down += n

    async def _upstream(self, pipe: TcpPipe, ws: WebSocket) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await pipe.read():
                self.bytes_up += len(chunk)
                await ws.send_bytes(chunk)  # returns once the websocket's socket takes more

    async def _downstream(self, ws: WebSocket, pipe: TcpPipe) -> None:
        received = False
        try:
            while True:
                msg = await ws.receive()
                if msg.kind == "closed":
                    code = msg.close_code
                    if not received and code not in (None, 1000, 1001):
                        _reply_503(pipe, f"websocket closed with code {code}")
                    return
                data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                received = True
                self.bytes_down += len(data)
                pipe.write(data)
                await pipe.drain()  # the next frame is read only once the local client keeps up
        except (ConnectionError, BackendAIError):
            return


def _reply_503(pipe: TcpPipe, reason: str) -> None:
    body = f"WebSocket reply: {reason}".encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with contextlib.suppress(Exception):
        pipe.write(head.encode() + body)  # close() sends it before the FIN
