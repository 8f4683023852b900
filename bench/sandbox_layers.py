"""Parts of ``bench/local_endpoint.py`` about the sandbox's layers: (a) concurrent sandbox
starts, and (d) a session's network next to the host's, same run.

* through the proxy: a service listening on the session's own loopback (its network
  namespace) sends ``mib`` MiB to the host, read through the endpoint's authenticated app proxy
  (``AppProxy``: websocket ``tcpproxy``, then the socket the endpoint made inside the session);
  reference: the same sender on the host's loopback, read directly;
* the way out: a cell reads ``mib`` MiB from a sender on the host's own (non-loopback) address,
  through slirp4netns; reference: the host reading the same sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any

from backendai_jupyter.client import Client, Output
from backendai_jupyter.client.apps import AppProxy

IMAGE = "cr.backend.ai/stable/python:3.13-ubuntu24.04"
BLOCK = b"x" * (1 << 20)

SENDER = r"""
import socket, threading
def send(c):
    block = b"x" * (1 << 20)
    try:
        for _ in range(MIB):
            c.sendall(block)
    finally:
        c.close()
def serve():
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", PORT)); srv.listen()
    while True:
        threading.Thread(target=send, args=(srv.accept()[0],), daemon=True).start()
threading.Thread(target=serve, daemon=True).start()
print("serving")
"""

READER = r"""
import socket, time
t0 = time.perf_counter(); n = 0
with socket.create_connection((HOST, PORT), timeout=30) as s:
    while (d := s.recv(1 << 20)):
        n += len(d)
print(n, time.perf_counter() - t0)
"""


async def bench_sandbox_start(n: int, tmp: Path) -> list[float]:
    """Seconds until each of ``n`` concurrently started session sandboxes (bwrap, with the
    layers that work here) is ready: what a sandboxed session start adds."""
    from backendai_jupyter.server.agent.layers import resolve_mode
    from backendai_jupyter.server.agent.sandbox import SessionSandbox

    isolation, _ = resolve_mode("auto")

    async def one(i: int) -> tuple[SessionSandbox, float]:
        work, runtime = tmp / f"s{i}", tmp / f"s{i}.runtime"
        work.mkdir(parents=True)
        runtime.mkdir()
        sb = SessionSandbox.for_session(workdir=work, config_dir=runtime, data_dir=tmp,
                                        mounts=[], isolation=isolation)
        t0 = time.perf_counter()
        await sb.start(tmp / f"s{i}.log")
        return sb, time.perf_counter() - t0

    started = await asyncio.gather(*(one(i) for i in range(n)))
    for sb, _ in started:
        await sb.stop()
    return [t for _, t in started]


async def _cell(client: Client, sid: str, code: str) -> str:
    text = ""
    async for ev in client.sessions.execute(sid, code, transport="rest"):
        if isinstance(ev, Output) and ev.item.kind in ("stdout", "stderr"):
            text += ev.item.data
    return text


async def _read_all(host: str, port: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    r, w = await asyncio.open_connection(host, port, limit=1 << 20)
    n = 0
    while data := await r.read(1 << 20):
        n += len(data)
    w.close()
    return n, time.perf_counter() - t0


async def _host_sender(host: str, mib: int) -> asyncio.Server:
    async def send(_reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        for _ in range(mib):
            w.write(BLOCK)
            await w.drain()
        w.close()

    return await asyncio.start_server(send, host, 0)


def _host_address() -> str | None:
    """The host's own non-loopback address (where slirp4netns's connections come from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
        except OSError:
            return None
        addr = str(s.getsockname()[0])
    return None if addr.startswith("127.") else addr


async def bench_network(client: Client, mib: int, port: int = 9099) -> dict[str, Any]:
    """MiB/s: ``proxy`` (session service → host, through the app proxy), ``host_loopback``
    (reference), ``out`` (cell ← host address, through slirp4netns), ``host_out`` (ref)."""
    info = await client.sessions.create(IMAGE, preopen_ports=[port],
                                        resources={"cpu": "1", "mem": "1g"})
    out: dict[str, Any] = {}
    try:
        assert "serving" in await _cell(client, info.id, f"PORT, MIB = {port}, {mib}\n" + SENDER)
        async with AppProxy(client, info.id, str(port), port=0) as proxy:
            n, secs = await _read_all("127.0.0.1", proxy.port)
        out["proxy"] = n / (1 << 20) / secs
        server = await _host_sender("127.0.0.1", mib)
        n, secs = await _read_all("127.0.0.1", server.sockets[0].getsockname()[1])
        out["host_loopback"] = n / (1 << 20) / secs
        server.close()
        host = _host_address()
        if host is not None:
            server = await _host_sender("0.0.0.0", mib)  # noqa: S104 - the bench's own sender
            sport = server.sockets[0].getsockname()[1]
            text = await _cell(client, info.id, f"HOST, PORT = {host!r}, {sport}\n" + READER)
            with contextlib.suppress(ValueError, IndexError):
                n_cell, secs_cell = text.split()[:2]
                out["out"] = int(n_cell) / (1 << 20) / float(secs_cell)
            n, secs = await _read_all(host, sport)
            out["host_out"] = n / (1 << 20) / secs
            server.close()
    finally:
        await client.sessions.destroy(info.id)
    return out
