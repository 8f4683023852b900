"""The app proxy's same-machine path: the endpoint hands over a socket connected to the service
and :class:`AppProxy` relays the local connection to it (no websocket, no byte through the
endpoint). Bytes intact both ways with half-close; the websocket path still serves when the
offer is off (``local_transfers=False``) or refused; the socket refuses forged or foreign tickets
and unknown apps; no ticket for non-loopback clients is tested in ``test_local_socket_offer``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backendai_jupyter.client import BackendAIError, Client, Output
from backendai_jupyter.client._local_transfer import LOCAL_CONNECT_HEADER
from backendai_jupyter.client.apps import AppProxy

from .conftest import IMAGE, Local

pytestmark = pytest.mark.timeout(180)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT = _free_port()


@pytest.fixture(scope="module")
async def session(client: Client) -> AsyncIterator[str]:
    info = await client.sessions.create(
        IMAGE, name=f"lc-{uuid.uuid4().hex[:6]}", preopen_ports=[PORT],
        resources={"cpu": "1", "mem": "1g"},
    )
    yield info.name
    with contextlib.suppress(BackendAIError):
        await client.sessions.destroy(info.name)


#: The session's own program on its preopen port (inside its network namespace when sandboxed):
#: echo until the client half-closes, then say how much came, and close.
SERVICE = r"""
import socket, threading
def handle(c):
    total = 0
    while d := c.recv(1 << 20):
        total += len(d); c.sendall(d)
    c.sendall(b"|%d" % total); c.close()
def serve():
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", PORT)); srv.listen()
    while True:
        threading.Thread(target=handle, args=(srv.accept()[0],), daemon=True).start()
threading.Thread(target=serve, daemon=True).start()
import time; time.sleep(0.3)
print("serving")
"""


@pytest.fixture(scope="module")
async def service(client: Client, session: str) -> str:
    text = ""
    async for ev in client.sessions.execute(session, f"PORT = {PORT}\n" + SERVICE,
                                            transport="rest"):
        if isinstance(ev, Output) and ev.item.kind in ("stdout", "stderr"):
            text += ev.item.data
    assert "serving" in text, text
    return session


async def _round_trip(port: int, payload: bytes, half_close: bool) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        w.write(payload)
        await w.drain()
        if half_close:
            w.write_eof()  # the answer still comes back

    sender = asyncio.create_task(send())
    if half_close:
        got = await asyncio.wait_for(r.read(), 60)
    else:
        got = await asyncio.wait_for(r.readexactly(len(payload)), 60)
    await sender
    w.close()
    return got


async def test_refused_connection_falls_back_to_the_websocket(
    client: Client, session: str
) -> None:
    # Nothing listens: the socket refuses, the websocket path answers as the official CLI.
    async with AppProxy(client, session, str(PORT), port=0) as proxy:
        assert proxy.local_offer is not None
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        reply = await asyncio.wait_for(r.read(), 10)
        assert reply.startswith(b"HTTP/1.1 503 Service Unavailable") and b"1013" in reply
        assert proxy.handed_over == 0
        w.close()


@pytest.mark.parametrize("local_path", [True, False])
async def test_bytes_both_ways(local: Local, service: str, local_path: bool) -> None:
    """Both paths relay intact bytes; the same-machine one also keeps a half-close (the
    websocket tunnel, as the official CLI's, ends a connection with either direction)."""
    payload = os.urandom(8 * 1024 * 1024 + 5)
    want = payload + b"|%d" % len(payload) if local_path else payload
    async with Client(local.config.with_(local_transfers=local_path)) as client:
        async with AppProxy(client, service, str(PORT), port=0) as proxy:
            assert (proxy.local_offer is not None) == local_path
            results = await asyncio.gather(*(_round_trip(proxy.port, payload, local_path)
                                              for _ in range(3)))
            for got in results:
                assert hashlib.sha256(got).digest() == hashlib.sha256(want).digest()
            assert proxy.bytes_up == 3 * len(payload)
            assert proxy.handed_over == (3 if local_path else 0) and proxy.connections == 3


async def test_a_busy_local_port_is_a_clear_error(client: Client, service: str) -> None:
    """The same-machine listener binds as ``create_server`` does: a port in use is one line."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proxy = AppProxy(client, service, str(PORT), port=port)
        with pytest.raises(BackendAIError, match=f"cannot listen on 127.0.0.1:{port}"):
            await proxy.start()
        assert proxy.local_offer is not None and not proxy.running


def _ask(address: str, request: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect("\0" + address[1:])
        sock.sendall(json.dumps(request).encode() + b"\n")
        data, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    return json.loads(data), fds


def _ping(fd: int) -> bytes:
    with socket.socket(fileno=fd) as service:
        service.setblocking(True)
        service.settimeout(10)
        service.sendall(b"ping")
        service.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := service.recv(100):
            got += chunk
    return got


async def test_the_socket_checks_tickets_and_apps(client: Client, service: str) -> None:
    resp = await client.http.request("GET", f"/stream/session/{service}/apps")
    address, _, ticket = resp.headers[LOCAL_CONNECT_HEADER].partition(" ")
    for request, status in (
        ({"ticket": ticket[:-2] + "xx", "app": str(PORT)}, 400),  # forged signature
        ({"ticket": "", "app": str(PORT)}, 400),
        ({"ticket": ticket, "app": "no-such-app"}, 404),
        ({"ticket": ticket, "app": "jupyter", "port": 1234}, 400),
    ):
        answer, fds = await asyncio.to_thread(_ask, address, {"op": "connect", **request})
        assert answer["status"] == status and fds == [], (request, answer)
    answer, fds = await asyncio.to_thread(
        _ask, address, {"op": "connect", "ticket": ticket, "app": str(PORT)})
    assert answer == {"ok": True} and len(fds) == 1
    assert await asyncio.to_thread(_ping, fds[0]) == b"ping|4"
    await client.sessions.destroy(service)  # a destroyed session's ticket connects nowhere
    answer, fds = await asyncio.to_thread(
        _ask, address, {"op": "connect", "ticket": ticket, "app": str(PORT)})
    assert answer["status"] == 404 and fds == []

