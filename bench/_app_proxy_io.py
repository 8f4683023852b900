"""The app-proxy benchmark's two outside parties, each run as a process of its own.

* ``--service``: the session's service (the preopen port): first byte ``S``: sink (read an
  8-byte length, then that many bytes, answer ``ok``); ``G``: source (send that many bytes,
  then close); anything else: echo that byte (the latency probe).
* ``--client``: the measuring client (a browser, ``scp``: never in the proxy's process). Reads
  commands on stdin, ``up PORT NBYTES`` / ``down PORT NBYTES`` (answer: bytes per second) and
  ``lat PORT N`` (answer: N set-up + 1-byte round-trip times, seconds), one JSON line each.

Not imported by the package; ``bench/app_proxy.py`` starts both.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

BLOCK = 1 << 20


async def _service(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        kind = await r.readexactly(1)
        if kind == b"S":
            left = int.from_bytes(await r.readexactly(8), "big")
            while left:
                data = await r.read(min(left, BLOCK))
                if not data:
                    break
                left -= len(data)
            w.write(b"ok")
        elif kind == b"G":
            left = int.from_bytes(await r.readexactly(8), "big")
            block = b"y" * BLOCK
            while left:
                n = min(left, BLOCK)
                w.write(block if n == BLOCK else block[:n])
                left -= n
                await w.drain()
        else:
            w.write(kind)
        await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        w.close()


async def bulk_up(port: int, nbytes: int) -> float:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    block = b"x" * BLOCK
    t0 = time.perf_counter()
    w.write(b"S" + nbytes.to_bytes(8, "big"))
    sent = 0
    while sent < nbytes:
        n = min(BLOCK, nbytes - sent)
        w.write(block if n == BLOCK else block[:n])
        sent += n
        await w.drain()
    assert await r.readexactly(2) == b"ok"
    dt = time.perf_counter() - t0
    w.close()
    return nbytes / dt


async def bulk_down(port: int, nbytes: int) -> float:
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=BLOCK)
    t0 = time.perf_counter()
    w.write(b"G" + nbytes.to_bytes(8, "big"))
    got = 0
    while chunk := await r.read(BLOCK):
        got += len(chunk)
    dt = time.perf_counter() - t0
    assert got == nbytes, (got, nbytes)
    w.close()
    return nbytes / dt


async def latency(port: int, n: int) -> list[float]:
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


async def _client_main() -> None:
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        what, port, amount = line.split()
        if what == "lat":
            answer: object = await latency(int(port), int(amount))
        else:
            answer = await (bulk_up if what == "up" else bulk_down)(int(port), int(amount))
        print(json.dumps(answer), flush=True)


async def _service_main() -> None:
    svc = await asyncio.start_server(_service, "127.0.0.1", 0)
    print(svc.sockets[0].getsockname()[1], flush=True)
    await svc.serve_forever()


if __name__ == "__main__":
    asyncio.run(_client_main() if sys.argv[1:] == ["--client"] else _service_main())
