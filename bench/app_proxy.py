"""Throughput and set-up latency of the app proxy vs a direct loopback connection (issue #6).

Like a real set-up, the pieces run in separate processes/threads: the local endpoint is a
``python -m backendai_jupyter serve`` subprocess, the "service" (a sink/echo TCP server on the
session's preopen port) another subprocess, our :class:`AppProxy` runs on a background-loop
thread (as under the magics) and the measuring client on the main loop. Measures:

* bulk bytes/s client → service (``--mb`` MiB, acknowledged by the sink) direct and through the
  proxy (local socket → websocket → tcpproxy → service), and their ratio (target >= 0.5);
* connection set-up latency: connect + 1-byte round trip, direct vs proxied (a new websocket per
  connection, as the official CLI does).

    python bench/app_proxy.py [--mb 256] [--conns 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backendai_jupyter.client import Client, ClientConfig, parse_endpoints
from backendai_jupyter.client.apps import AppProxy
from backendai_jupyter.magics._loop import BackgroundLoop

CHUNK = 256 * 1024


async def _service(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """First byte 'S': sink — read N bytes (8-byte length prefix) and answer b"ok".
    Anything else: echo one byte back (latency probe)."""
    try:
        kind = await r.readexactly(1)
        if kind == b"S":
            n = int.from_bytes(await r.readexactly(8), "big")
            left = n
            while left:
                data = await r.read(min(left, 1 << 20))
                if not data:
                    break
                left -= len(data)
            w.write(b"ok")
        else:
            w.write(kind)
        await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        w.close()


async def _bulk(port: int, nbytes: int) -> float:
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=CHUNK)
    block = b"x" * (1 << 20)
    t0 = time.perf_counter()
    w.write(b"S" + nbytes.to_bytes(8, "big"))
    sent = 0
    while sent < nbytes:
        w.write(block[: min(len(block), nbytes - sent)])
        sent += min(len(block), nbytes - sent)
        await w.drain()
    assert await r.readexactly(2) == b"ok"
    dt = time.perf_counter() - t0
    w.close()
    return nbytes / dt


async def _latency(port: int, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"p")
        await w.drain()
        assert await r.readexactly(1) == b"p"
        out.append(time.perf_counter() - t0)
        w.close()
    return out


def _cpu(pids: tuple[int, ...]) -> float:
    """CPU seconds used so far by this process and ``pids``."""
    total = sum(os.times()[:2])
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _start_serve(data_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    out = data_dir.parent / "serve.out"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "backendai_jupyter", "serve", "--port", "0",
             "--data-dir", str(data_dir)], stdout=f, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while "# Backend.AI local endpoint" not in out.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("serve did not start")
        time.sleep(0.1)
    return proc, dict(re.findall(r"^export (BACKEND_\w+)=(.*)$", out.read_text(), re.M))


async def main(mb: int, conns: int) -> int:
    sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdout=subprocess.PIPE)
    assert sink.stdout is not None
    port = int(sink.stdout.readline())
    bg = BackgroundLoop("bench-proxy")
    with tempfile.TemporaryDirectory() as tmp:
        serve, env = _start_serve(Path(tmp) / "data")

        async def make() -> tuple[Client, AppProxy, str]:
            client = Client(ClientConfig(endpoints=parse_endpoints(env["BACKEND_ENDPOINT"]),
                                         access_key=env["BACKEND_ACCESS_KEY"],
                                         secret_key=env["BACKEND_SECRET_KEY"]))
            info = await client.sessions.create("python", preopen_ports=[port])
            proxy = await AppProxy(client, info.name, str(port), port=0).start()
            return client, proxy, info.name

        client, proxy, name = bg.run(make())
        try:
            nbytes = mb * 1024 * 1024
            await _bulk(port, 1 << 20)
            await _bulk(proxy.port, 1 << 20)  # warm-up
            pids = (serve.pid, sink.pid)
            c0 = _cpu(pids)
            direct = max([await _bulk(port, nbytes) for _ in range(3)])
            c1 = _cpu(pids)
            proxied = max([await _bulk(proxy.port, nbytes) for _ in range(3)])
            c2 = _cpu(pids)
            lat_d = await _latency(port, conns)
            lat_p = await _latency(proxy.port, conns)
        finally:
            async def close() -> None:
                await proxy.stop()
                await client.sessions.destroy(name)
                await client.close()

            bg.run(close())
            bg.close()
            serve.terminate()
            serve.wait(30)
            sink.terminate()
            sink.wait(10)
    ratio = proxied / direct
    gib = 3 * mb / 1024
    cpu_d, cpu_p = (c1 - c0) / gib, (c2 - c1) / gib
    print(f"bulk {mb} MiB, best of 3 (client -> service):")
    print(f"  direct loopback : {direct / 2**20:9.1f} MiB/s")
    print(f"  through proxy   : {proxied / 2**20:9.1f} MiB/s")
    print(f"  ratio           : {ratio:9.2f}  (target >= 0.5)")
    print(f"  CPU seconds/GiB : direct {cpu_d:.2f}, proxied {cpu_p:.2f} (all processes; "
          f"os.cpu_count()={os.cpu_count()})")
    print(f"connection set-up + 1-byte round trip, median of {conns} (p90):")
    print(f"  direct loopback : {statistics.median(lat_d) * 1e3:7.2f} ms "
          f"({sorted(lat_d)[int(0.9 * conns)] * 1e3:.2f})")
    print(f"  through proxy   : {statistics.median(lat_p) * 1e3:7.2f} ms "
          f"({sorted(lat_p)[int(0.9 * conns)] * 1e3:.2f})")
    return 0 if ratio >= 0.5 else 1


async def _sink_main() -> None:
    svc = await asyncio.start_server(_service, "127.0.0.1", 0, limit=CHUNK)
    print(svc.sockets[0].getsockname()[1], flush=True)
    await svc.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:] == ["--sink"]:
        asyncio.run(_sink_main())
        sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--conns", type=int, default=50)
    a = ap.parse_args()
    sys.exit(asyncio.run(main(a.mb, a.conns)))
