"""Throughput, CPU cost and set-up latency of the app proxy vs a direct loopback connection.

Targets (``proxied``: our :class:`AppProxy` on the local endpoint, which hands it the service's
socket to splice to): >= 0.5x direct both ways, <= 2x its CPU per GiB, set-up <= 1 ms, faster
than the official CLI's ``backend.ai app`` (``official``, measured in the same run when
``$BAI_CLIENT_VENV`` or the cluster's ``user.env`` names it). ``websock``: the same AppProxy over
the websocket (``local_transfers=False``), what every byte paid before and still pays against a
remote cluster. All targets run interleaved, round by round.

Like a real set-up, the pieces run in separate processes/threads: the local endpoint is a
``python -m backendai_jupyter serve`` subprocess, the "service" (a sink/source/echo TCP server on
the session's preopen port) another subprocess, our :class:`AppProxy` runs on a background-loop
thread (as under the magics) and the measuring client on the main loop. Measures, direct and
through each proxy (``proxied``: local socket → splice → service socket handed over by the
endpoint; ``websock`` and ``official``: local socket → websocket → tcpproxy → service):

* bulk transfers of ``--mb`` MiB, best of ``--runs``, both ways: ``up`` (client → service,
  acknowledged by the sink) and ``down`` (service → client); bytes/s and their ratio
  (target >= 0.5);
* CPU seconds per GiB moved, all processes together and split by component (the measuring
  client, the proxy thread, the endpoint, the service) — the primary metric: wall-clock
  throughput is noisy on a shared machine, CPU time per byte is not;
* connection set-up latency: connect + 1-byte round trip (per connection a service socket from
  the endpoint, or a new websocket, as the official CLI does);
* the endpoint's peak RSS during the bulk runs (``VmHWM`` reset before them) and the load
  average.

    python bench/app_proxy.py [--mb 256] [--runs 3] [--conns 50] [--profile DIR]

``--profile DIR`` runs the endpoint and the proxy thread under cProfile (``DIR/serve.prof``,
``DIR/proxy.prof``); the numbers are then inflated by the profiler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from backendai_jupyter.client import Client, ClientConfig, parse_endpoints
from backendai_jupyter.client.apps import AppProxy
from backendai_jupyter.workspace.loop import BackgroundLoop

BLOCK = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")


async def _service(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """First byte 'S': sink — read N bytes (8-byte length prefix) and answer b"ok".
    'G': source — send N bytes, then close. Anything else: echo one byte (latency probe)."""
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


async def _bulk_up(port: int, nbytes: int) -> float:
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


async def _bulk_down(port: int, nbytes: int) -> float:
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


def _ticks(stat: str) -> tuple[float, float]:
    """(user, system) CPU seconds from a ``/proc/.../stat``."""
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


class Meter:
    """CPU seconds per component: threads of this process and child processes."""

    def __init__(self, **parts: str) -> None:
        self.parts = parts  # name -> /proc/.../stat

    def read(self) -> dict[str, tuple[float, float]]:
        return {k: _ticks(v) for k, v in self.parts.items()}

    @staticmethod
    def zero(parts: dict[str, str]) -> dict[str, tuple[float, float]]:
        return dict.fromkeys(parts, (0.0, 0.0))

    @staticmethod
    def add(
        a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]]
    ) -> dict[str, tuple[float, float]]:
        return {k: (a[k][0] + b[k][0], a[k][1] + b[k][1]) for k in a}

    @staticmethod
    def diff(
        a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]]
    ) -> dict[str, tuple[float, float]]:
        return {k: (b[k][0] - a[k][0], b[k][1] - a[k][1]) for k in a}


def _reset_peak(pid: int) -> None:
    """Restart the process's ``VmHWM`` from its current RSS (``clear_refs`` 5, Linux >= 4.0)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _vmhwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _official_cli() -> Path | None:
    """The official 26.9.6 CLI (``$BAI_CLIENT_VENV``, else the cluster's ``user.env``)."""
    venv = os.environ.get("BAI_CLIENT_VENV")
    env_file = Path(os.environ.get("BAI_CLUSTER_ENV", "/tmp/backendai-cluster/user.env"))
    if not venv and env_file.is_file():
        found = re.search(r"^BAI_CLIENT_VENV=(.*)$", env_file.read_text(), re.M)
        venv = found.group(1).strip() if found else None
    exe = Path(venv) / "bin" / "backend.ai" if venv else None
    return exe if exe is not None and exe.is_file() else None


def _start_official(
    env: dict[str, str], session: str, app_port: int, tmp: Path
) -> tuple[subprocess.Popen[bytes], int] | None:
    """``backend.ai app SESSION PORT -b LOCAL`` against the same endpoint, as
    tests/conformance drive it (empty working directory, private HOME, keys in the env)."""
    exe = _official_cli()
    if exe is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = int(s.getsockname()[1])
    work, home = tmp / "cli", tmp / "cli-home"
    work.mkdir()
    home.mkdir()
    cenv = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "BAI_"))}
    cenv.pop("VIRTUAL_ENV", None)
    cenv.update(env, HOME=str(home), BACKEND_ENDPOINT_TYPE="api", PYTHONWARNINGS="ignore",
                NO_COLOR="1")
    with (tmp / "cli.out").open("wb") as out:
        proc = subprocess.Popen([str(exe), "app", session, str(app_port), "-b", str(local)],
                                cwd=work, env=cenv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", local), timeout=1).close()
            return proc, local
        except OSError:
            time.sleep(0.2)
    _stop_official(proc)
    print(f"# official CLI did not listen: {(tmp / 'cli.out').read_text()[-500:]}")
    return None


def _stop_official(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _start_serve(
    data_dir: Path, profile: Path | None
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    out = data_dir.parent / "serve.out"
    prof = ["-m", "cProfile", "-o", str(profile / "serve.prof")] if profile else []
    with out.open("wb") as f:
        proc = subprocess.Popen(
            # No sandbox: the service (and the direct reference) listen on the host's loopback;
            # a sandboxed session's preopen port is inside its own network namespace.
            [sys.executable, *prof, "-m", "backendai_jupyter", "serve", "--port", "0",
             "--data-dir", str(data_dir), "--sandbox", "none"], stdout=f,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while "# Backend.AI local endpoint" not in out.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("serve did not start")
        time.sleep(0.1)
    return proc, dict(re.findall(r"^export (BACKEND_\w+)=(.*)$", out.read_text(), re.M))


async def main(mb: int, runs: int, conns: int, profile: Path | None) -> int:
    sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdout=subprocess.PIPE)
    assert sink.stdout is not None
    port = int(sink.stdout.readline())
    bg = BackgroundLoop("bench-proxy")
    prof = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory() as tmp:
        serve, env = _start_serve(Path(tmp) / "data", profile)

        async def make() -> tuple[Client, AppProxy, AppProxy, str, int]:
            config = ClientConfig(endpoints=parse_endpoints(env["BACKEND_ENDPOINT"]),
                                  access_key=env["BACKEND_ACCESS_KEY"],
                                  secret_key=env["BACKEND_SECRET_KEY"])
            client = Client(config)
            info = await client.sessions.create("python", preopen_ports=[port])
            proxy = await AppProxy(client, info.name, str(port), port=0).start()
            # The same AppProxy with the same-machine path off: every byte over the websocket.
            ws_client = Client(config.with_(local_transfers=False))
            ws_proxy = await AppProxy(ws_client, info.name, str(port), port=0).start()
            assert proxy.local_offer is not None and ws_proxy.local_offer is None
            return client, proxy, ws_proxy, info.name, threading.get_native_id()

        client, proxy, ws_proxy, name, proxy_tid = bg.run(make())
        me = os.getpid()
        parts = {
            "client": f"/proc/{me}/task/{threading.get_native_id()}/stat",
            "proxy": f"/proc/{me}/task/{proxy_tid}/stat",
            "endpoint": f"/proc/{serve.pid}/stat",
            "service": f"/proc/{sink.pid}/stat",
        }
        targets = {"direct": port, "proxied": proxy.port, "websock": ws_proxy.port}
        official = _start_official(env, name, port, Path(tmp))
        if official is not None:
            targets["official"] = official[1]
            parts["official"] = f"/proc/{official[0].pid}/stat"
        meter = Meter(**parts)
        results: dict[tuple[str, str], tuple[float, dict[str, tuple[float, float]]]] = {}
        loads: list[float] = []
        try:
            nbytes = mb * 1024 * 1024
            for target in targets.values():  # warm-up
                await _bulk_up(target, BLOCK)
                await _bulk_down(target, BLOCK)
            if prof:
                bg.run(_call(prof.enable))
            _reset_peak(serve.pid)
            await _bulk_runs(targets, meter, runs, nbytes, results, loads)
            endpoint_peak = _vmhwm(serve.pid)
            lat = {label: await _latency(target, conns) for label, target in targets.items()}
            if prof:
                bg.run(_call(prof.disable))
                assert profile is not None
                prof.dump_stats(profile / "proxy.prof")
        finally:
            async def close() -> None:
                await proxy.stop()
                await ws_proxy.stop()
                await client.sessions.destroy(name)
                await client.close()
                await ws_proxy.client.close()

            bg.run(close())
            bg.close()
            if official is not None:
                _stop_official(official[0])
            serve.terminate()
            serve.wait(30)
            sink.terminate()
            sink.wait(10)
    _report(results, lat, mb, runs, conns, endpoint_peak, loads, official is not None)
    worst = min(results[w, "proxied"][0] / results[w, "direct"][0] for w in ("up", "down"))
    return 0 if worst >= 0.5 else 1


def _report(
    results: dict[tuple[str, str], tuple[float, dict[str, tuple[float, float]]]],
    lat: dict[str, list[float]], mb: int, runs: int, conns: int, endpoint_peak: int,
    loads: list[float], has_official: bool,
) -> None:
    gib = runs * mb / 1024
    print(f"bulk {mb} MiB, best of {runs} interleaved; CPU-s/GiB summed over all runs "
          f"(os.cpu_count()={os.cpu_count()}; load average {min(loads):.1f}-{max(loads):.1f}):")
    if not has_official:
        print("  (official CLI not measured: no BAI_CLIENT_VENV)")
    for way in ("up", "down"):
        d_rate, d_cpu = results[way, "direct"]
        d_total = sum(u + s for u, s in d_cpu.values()) / gib
        for label in [k for w, k in results if w == way]:
            rate, cpu = results[way, label]
            total = sum(u + s for u, s in cpu.values()) / gib
            split = "  ".join(
                f"{k} {(u + s) / gib:.2f}={u / gib:.2f}u+{s / gib:.2f}s"
                for k, (u, s) in cpu.items() if u + s
            )
            print(f"  {way:4s} {label:8s} {rate / 2**20:7.1f} MiB/s  ratio {rate / d_rate:.2f}  "
                  f"CPU-s/GiB {total:5.2f} ({total / d_total:.2f}x direct)  ({split})")
    print("  targets: proxied >= 0.5x direct both ways, <= 2x its CPU per GiB, faster than "
          "official")
    print(f"  endpoint peak RSS during the bulk runs: {endpoint_peak / 2**20:.0f} MiB")
    print(f"connection set-up + 1-byte round trip, median of {conns} (p90; target <= 1 ms):")
    for label, times in lat.items():
        print(f"  {label:8s}: {statistics.median(times) * 1e3:7.2f} ms "
              f"({sorted(times)[int(0.9 * conns)] * 1e3:.2f})")


async def _bulk_runs(
    targets: dict[str, int], meter: Meter, runs: int, nbytes: int,
    results: dict[tuple[str, str], tuple[float, dict[str, tuple[float, float]]]],
    loads: list[float],
) -> None:
    """Best rate and summed CPU per (way, target), every target once per round (interleaved:
    every target sees the same load)."""
    for way, fn in (("up", _bulk_up), ("down", _bulk_down)):
        cpu = {label: Meter.zero(meter.parts) for label in targets}
        best = dict.fromkeys(targets, 0.0)
        for _ in range(runs):
            for label, target in targets.items():
                c0 = meter.read()
                best[label] = max(best[label], await fn(target, nbytes))
                cpu[label] = Meter.add(cpu[label], Meter.diff(c0, meter.read()))
                loads.append(os.getloadavg()[0])
        for label in targets:
            results[way, label] = best[label], cpu[label]


async def _call(fn: object) -> None:
    assert callable(fn)
    fn()


async def _sink_main() -> None:
    svc = await asyncio.start_server(_service, "127.0.0.1", 0)
    print(svc.sockets[0].getsockname()[1], flush=True)
    await svc.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:] == ["--sink"]:
        asyncio.run(_sink_main())
        sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--profile", type=Path, default=None)
    a = ap.parse_args()
    sys.exit(asyncio.run(main(a.mb, a.runs, a.conns, a.profile)))
