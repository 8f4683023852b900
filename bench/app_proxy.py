"""Throughput, CPU cost and set-up latency of the app proxy vs a direct loopback connection.

Targets (``proxied``: our :class:`AppProxy` on the local endpoint, which hands it the service's
socket to splice to): >= 0.5x direct both ways, <= 2x its CPU per GiB, set-up <= 1 ms, faster
than the official CLI's ``backend.ai app`` (``official``, measured in the same run when
``$BAI_CLIENT_VENV`` or the cluster's ``user.env`` names it). ``websock``: the same AppProxy over
the websocket (``local_transfers=False``), what every byte paid before and still pays against a
remote cluster.

The pieces run as in real use: the local endpoint is a ``python -m backendai_jupyter serve``
subprocess, the "service" (sink/source/echo on the session's preopen port) and the measuring
client (what a browser or ``scp`` would be) are processes of their own (``_app_proxy_io.py``),
our AppProxy runs on a background-loop thread of this process (as under the magics) with the
main thread idle. ``--same-process`` puts the measuring client on this process's main thread
instead (the arrangement of earlier rounds: the client then shares the GIL with the proxy).

Every target is measured once per round, rounds interleaved (every target sees the same load);
each ratio compares a target with the direct reference **of the same round**, and the spread
over rounds is printed (median, min-max), the reference's own spread included:

* bulk transfers of ``--mb`` MiB both ways: ``up`` (client → service, acknowledged by the sink)
  and ``down`` (service → client);
* CPU seconds per GiB moved, all processes together and split by component (client, proxy
  thread, endpoint, service, official CLI): on a shared 2-core machine throughput follows the
  CPU left over, CPU time per byte much less so;
* connection set-up latency: connect + 1-byte round trip (per connection a service socket from
  the endpoint, or a new websocket, as the official CLI does), ``--conns`` per round;
* how many of the proxied connections took the hand-over path (the endpoint's socket, spliced):
  all of them, or the run says so; the endpoint's CPU and its peak RSS (``VmHWM`` reset before
  the bulk runs); the load average.

    python bench/app_proxy.py [--mb 128] [--runs 3] [--conns 50] [--profile DIR] [--same-process]

``--profile DIR`` runs the endpoint and the proxy thread under cProfile (``DIR/serve.prof``,
``DIR/proxy.prof``); the numbers are then inflated by the profiler. Exit status 0 when every
target is met on the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
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
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from _app_proxy_io import bulk_down, bulk_up, latency

from backendai_jupyter.client import Client, ClientConfig, parse_endpoints
from backendai_jupyter.client.apps import AppProxy
from backendai_jupyter.workspace.loop import BackgroundLoop

BLOCK = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")
IO = str(Path(__file__).with_name("_app_proxy_io.py"))
CPU = dict[str, tuple[float, float, float]]


class ChildClient:
    """The measuring client as a process of its own (commands on its stdin)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, IO, "--client"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.stat = f"/proc/{self.proc.pid}/stat"

    def ask(self, what: str, port: int, amount: int) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{what} {port} {amount}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


class SameProcessClient:
    """The measuring client on this process's main thread (``--same-process``)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.stat = f"/proc/{os.getpid()}/task/{threading.get_native_id()}/stat"

    def ask(self, what: str, port: int, amount: int) -> Any:
        coro: Awaitable[Any] = (latency if what == "lat" else
                                bulk_up if what == "up" else bulk_down)(port, amount)
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.close()


def _ticks(stat: str) -> tuple[float, float]:
    """(user, system) CPU seconds from a ``/proc/.../stat`` (clock ticks: 10 ms steps)."""
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def _run_seconds(stat: str) -> float:
    """CPU seconds, nanosecond-exact, from ``schedstat``: of the thread a ``task/TID/stat``
    names, else of every thread of the process."""
    base = Path(stat).parent
    tasks = [base] if base.parent.name == "task" else list((base / "task").iterdir())
    total = 0
    for task in tasks:
        with contextlib.suppress(OSError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


class Meter:
    """CPU per component (threads of this process, child processes): ``(user, system, exact)``
    seconds; user/system in clock ticks, ``exact`` from schedstat."""

    def __init__(self, parts: dict[str, str]) -> None:
        self.parts = parts  # name -> /proc/.../stat

    def read(self) -> dict[str, tuple[float, float, float]]:
        return {k: (*_ticks(v), _run_seconds(v)) for k, v in self.parts.items()}

    @staticmethod
    def diff(a: dict[str, tuple[float, float, float]],
             b: dict[str, tuple[float, float, float]]) -> CPU:
        return {k: (b[k][0] - a[k][0], b[k][1] - a[k][1], b[k][2] - a[k][2]) for k in a}


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


Result = dict[tuple[str, str], list[tuple[float, CPU]]]  # (way, target) -> per round


def main(mb: int, runs: int, conns: int, profile: Path | None, same_process: bool) -> int:
    sink = subprocess.Popen([sys.executable, IO, "--service"], stdout=subprocess.PIPE)
    assert sink.stdout is not None
    port = int(sink.stdout.readline())
    bg = BackgroundLoop("bench-proxy")
    prof = cProfile.Profile() if profile else None
    prober: ChildClient | SameProcessClient = SameProcessClient() if same_process \
        else ChildClient()
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
        parts = {"client": prober.stat, "proxy": f"/proc/{me}/task/{proxy_tid}/stat",
                 "endpoint": f"/proc/{serve.pid}/stat", "service": f"/proc/{sink.pid}/stat"}
        targets = {"direct": port, "proxied": proxy.port, "websock": ws_proxy.port}
        official = _start_official(env, name, port, Path(tmp))
        if official is not None:
            targets["official"] = official[1]
            parts["official"] = f"/proc/{official[0].pid}/stat"
        meter = Meter(parts)
        try:
            for target in targets.values():  # warm-up
                prober.ask("up", target, BLOCK)
                prober.ask("down", target, BLOCK)
            if prof:
                bg.run(_call(prof.enable))
            _reset_peak(serve.pid)
            endpoint_cpu0 = _run_seconds(parts["endpoint"])
            results, loads = _bulk_rounds(prober, targets, meter, runs, mb * 2**20)
            endpoint_peak = _vmhwm(serve.pid)
            lat = _latency_rounds(prober, targets, runs, conns)
            endpoint_cpu = _run_seconds(parts["endpoint"]) - endpoint_cpu0
            if prof:
                bg.run(_call(prof.disable))
                assert profile is not None
                prof.dump_stats(profile / "proxy.prof")
            spliced = (proxy.handed_over, proxy.connections)
        finally:
            async def close() -> None:
                await proxy.stop()
                await ws_proxy.stop()
                await client.sessions.destroy(name)
                await client.close()
                await ws_proxy.client.close()

            bg.run(close())
            bg.close()
            prober.close()
            if official is not None:
                _stop_official(official[0])
            serve.terminate()
            serve.wait(30)
            sink.terminate()
            sink.wait(10)
    print(f"measuring client: {'this process (main thread)' if same_process else 'own process'}"
          f"; proxy: a background-loop thread; {runs} rounds, interleaved; "
          f"os.cpu_count()={os.cpu_count()}, load average {min(loads):.1f}-{max(loads):.1f}")
    ok = _report_bulk(results, mb, official is not None)
    print(f"  proxied connections that took the hand-over path: {spliced[0]} of {spliced[1]}")
    print(f"  endpoint: {endpoint_cpu:.2f} CPU-s over the bulk and set-up runs, peak RSS during "
          f"the bulk runs {endpoint_peak / 2**20:.0f} MiB")
    ok = _report_latency(lat, conns) and ok and spliced[0] == spliced[1]
    return 0 if ok else 1


def _bulk_rounds(
    prober: ChildClient | SameProcessClient, targets: dict[str, int], meter: Meter,
    runs: int, nbytes: int,
) -> tuple[Result, list[float]]:
    """Rate and CPU per (way, target) per round, every target once per round."""
    results: Result = {}
    loads: list[float] = []
    for way in ("up", "down"):
        for _ in range(runs):
            for label, target in targets.items():
                c0 = meter.read()
                rate = prober.ask(way, target, nbytes)
                results.setdefault((way, label), []).append((rate, meter.diff(c0, meter.read())))
                loads.append(os.getloadavg()[0])
    return results, loads


def _latency_rounds(
    prober: ChildClient | SameProcessClient, targets: dict[str, int], runs: int, conns: int
) -> dict[str, list[list[float]]]:
    lat: dict[str, list[list[float]]] = {label: [] for label in targets}
    for _ in range(runs):
        for label, target in targets.items():
            lat[label].append(prober.ask("lat", target, conns))
    return lat


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """``median (min-max)``."""
    return (f"{fmt.format(statistics.median(values))} "
            f"({fmt.format(min(values))}-{fmt.format(max(values))})")


def _report_bulk(results: Result, mb: int, has_official: bool) -> bool:
    gib = mb / 1024
    print(f"bulk {mb} MiB per transfer; ratios against the direct reference of the same round, "
          "median (min-max) over rounds; CPU-s/GiB all processes, exact (schedstat); split "
          "by component summed over rounds (user+system, clock ticks):")
    if not has_official:
        print("  (official CLI not measured: no BAI_CLIENT_VENV)")
    ok = True
    for way in ("up", "down"):
        direct = results[way, "direct"]
        d_rates = [r for r, _ in direct]
        d_cpu = [sum(c[2] for c in cpu.values()) / gib for _, cpu in direct]
        print(f"  {way:4s} direct   {_spread([r / 2**20 for r in d_rates], '{:.0f}')} MiB/s "
              f"(the reference's own spread: {100 * (max(d_rates) / min(d_rates) - 1):.0f}%), "
              f"CPU-s/GiB {_spread(d_cpu)}")
        for label in [k for w, k in results if w == way and k != "direct"]:
            runs = results[way, label]
            ratio = [r / d for (r, _), d in zip(runs, d_rates, strict=True)]
            cpu = [sum(c[2] for c in cs.values()) / gib for _, cs in runs]
            cpu_ratio = [c / d for c, d in zip(cpu, d_cpu, strict=True)]
            summed = {k: (sum(cs[k][0] for _, cs in runs), sum(cs[k][1] for _, cs in runs))
                      for k in runs[0][1]}
            split = "  ".join(f"{k} {(u + s) / gib / len(runs):.2f}" for k, (u, s) in
                              summed.items() if u + s)
            print(f"  {way:4s} {label:8s} {_spread([r / 2**20 for r, _ in runs], '{:.0f}')} "
                  f"MiB/s  ratio {_spread(ratio)}  CPU-s/GiB {_spread(cpu)} = "
                  f"{_spread(cpu_ratio)}x direct  ({split})")
            if label == "proxied":
                ok = ok and statistics.median(ratio) >= 0.5 and statistics.median(cpu_ratio) <= 2
            if label == "official":
                mine = [r for r, _ in results[way, "proxied"]]
                versus = [a / b for a, (b, _) in zip(mine, runs, strict=True)]
                print(f"  {way:4s} proxied faster than official in "
                      f"{sum(v > 1 for v in versus)} of {len(runs)} rounds ({_spread(versus)}x)")
    print("  targets: proxied >= 0.5x direct both ways, <= 2x its CPU per GiB, faster than "
          "official")
    return ok


def _report_latency(lat: dict[str, list[list[float]]], conns: int) -> bool:
    print(f"connection set-up + 1-byte round trip: median of all, p90, and the per-round "
          f"medians' range ({conns} per round; target <= 1 ms):")
    for label, rounds in lat.items():
        flat = sorted(t for r in rounds for t in r)
        print(f"  {label:8s}: {statistics.median(flat) * 1e3:6.2f} ms  p90 "
              f"{flat[int(0.9 * len(flat))] * 1e3:.2f}  rounds "
              f"{min(map(statistics.median, rounds)) * 1e3:.2f}-"
              f"{max(map(statistics.median, rounds)) * 1e3:.2f}")
    return statistics.median(t for r in lat["proxied"] for t in r) <= 1e-3


async def _call(fn: object) -> None:
    assert callable(fn)
    fn()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--same-process", action="store_true")
    a = ap.parse_args()
    sys.exit(main(a.mb, a.runs, a.conns, a.profile, a.same_process))
