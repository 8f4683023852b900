"""Benchmark: the local endpoint (``python -m backendai_jupyter serve``) against named references
measured in the same run, on the same machine (issue #3 item 8).

(a) ``--sessions`` (16) sessions created concurrently, each running one cell: create → RUNNING
    median and the total until every cell finished. Reference: the same number of ipykernels
    started concurrently with ``jupyter_client`` (same argv, ``wait_for_ready``, one cell).
(b) execute overhead: ``pass`` round trips through our client over the websocket and over REST,
    against a direct ``BlockingKernelClient.execute_interactive`` to an ipykernel started the same
    way (a direct async client, the server's own code path, is listed too).
(d) a session's network (``bench/sandbox_layers.py``): a service on the session's loopback
    read through the app proxy, and a cell reading from the host's address through slirp4netns,
    each next to the host doing the same.
(c) a ``--size-mib`` (1024) tus upload with ``client.folders.upload`` against ``cp`` of the same
    file (throughput ratio), and the server process's memory growth (``VmRSS``/``VmHWM`` from
    ``/proc/<pid>/status``; a fresh server, so its peak is the upload's).

Data goes to a temporary directory under ``--tmp`` (default /tmp), removed at the end. The page
cache is flushed (``sync``) before each timed copy/upload. ``bench/vfolder_transfer.py`` measures
uploads and downloads in more detail (and against the official CLI on the real cluster).

    .venv/bin/python bench/local_endpoint.py [--sessions 16] [--repeat 200] [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager, KernelManager

from backendai_jupyter.client import Client, ClientConfig, Finished, parse_endpoints
from backendai_jupyter.client.execution import Transport

sys.path.insert(0, str(Path(__file__).parent))
from sandbox_layers import bench_network, bench_sandbox_start  # noqa: E402

IMAGE = "cr.backend.ai/stable/python:3.13-ubuntu24.04"
KERNEL_ARGV = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
MiB = 1024 * 1024


# -- the server ---------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    access_key: str
    secret_key: str

    def client(self) -> Client:
        return Client(
            ClientConfig(
                endpoints=parse_endpoints(self.url),
                access_key=self.access_key,
                secret_key=self.secret_key,
            )
        )

    def status(self) -> dict[str, int]:
        """``VmRSS``/``VmHWM`` of the server process, in bytes."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
        return out

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(base: Path, *capacity: str, sandbox: str = "auto", without: str = "") -> Server:
    """``without``: sandbox layers left out (``user,network``: what they cost)."""
    base.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "backendai_jupyter", "serve", "--host", "127.0.0.1",
           "--port", "0", "--data-dir", str(base / "data"), "--sandbox", sandbox]
    for c in capacity:
        cmd += ["--capacity", c]
    env = dict(os.environ, BACKENDAI_JUPYTER_SANDBOX_WITHOUT=without)
    with (base / "serve.out").open("wb") as out, (base / "serve.err").open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    while "# Backend.AI local endpoint" not in (text := (base / "serve.out").read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError((base / "serve.err").read_text()[-2000:])
        time.sleep(0.05)
    env = dict(re.findall(r"^export (BACKEND_\w+)=(.*)$", text, re.M))
    return Server(proc, env["BACKEND_ENDPOINT"], env["BACKEND_ACCESS_KEY"],
                  env["BACKEND_SECRET_KEY"])


# -- direct ipykernels (the references) ---------------------------------------------------------


class _KM(AsyncKernelManager):  # type: ignore[misc,unused-ignore]
    """Same kernelspec as the server's ``SessionProcess`` (minus its rlimit launcher)."""

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(argv=KERNEL_ARGV, display_name="bench", language="python")


class _SyncKM(KernelManager):  # type: ignore[misc,unused-ignore]
    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(argv=KERNEL_ARGV, display_name="bench", language="python")


async def _direct_run(kc: Any, code: str) -> None:
    """Execute and wait for the kernel's ``idle`` on iopub (what the server waits for)."""
    msg_id = kc.execute(code)
    while True:
        msg = await kc.get_iopub_msg(timeout=30)
        if (
            msg["parent_header"].get("msg_id") == msg_id
            and msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
        ):
            return


async def direct_start(workdir: Path) -> tuple[float, float, Any, Any]:
    """Start one kernel and run one cell: (seconds to ready, seconds to cell done, km, kc)."""
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    km = _KM(connection_file=str(workdir / "kernel.json"))
    await km.start_kernel(cwd=str(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=120)
    ready = time.perf_counter() - t0
    await _direct_run(kc, "print(1)")
    return ready, time.perf_counter() - t0, km, kc


# -- (a) concurrent sessions --------------------------------------------------------------------


async def bench_sessions(server: Server, n: int, tmp: Path) -> dict[str, float]:
    async with server.client() as client:
        await client.connect()
        t0 = time.perf_counter()  # one session alone first: the uncontended cost
        solo = await client.sessions.create(IMAGE, name="bench-solo")
        solo_ready = time.perf_counter() - t0
        await client.sessions.destroy(solo.id)
        ref_solo, _, km, kc = await direct_start(tmp / "solo")
        kc.stop_channels()
        await km.shutdown_kernel(now=True)

        async def one(i: int) -> tuple[float, float, str]:
            t0 = time.perf_counter()
            info = await client.sessions.create(
                IMAGE, name=f"bench-{i:02d}", resources={"cpu": "1", "mem": "1g"}
            )
            ready = time.perf_counter() - t0
            assert info.status == "RUNNING", info
            async for ev in client.sessions.execute(info.id, f"print({i})"):
                if isinstance(ev, Finished):
                    assert ev.exit_code == 0
            return ready, time.perf_counter() - t0, info.id

        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        total = time.perf_counter() - t0
        await asyncio.gather(*(client.sessions.destroy(sid) for _, _, sid in results))

    t0 = time.perf_counter()
    direct = await asyncio.gather(*(direct_start(tmp / f"k{i}") for i in range(n)))
    ref_total = time.perf_counter() - t0
    for _, _, _, kc in direct:
        kc.stop_channels()
    await asyncio.gather(*(km.shutdown_kernel(now=True) for _, _, km, _ in direct))
    return {
        "solo": solo_ready,
        "ref_solo": ref_solo,
        "ready_median": statistics.median(r for r, _, _ in results),
        "ready_max": max(r for r, _, _ in results),
        "total": total,
        "ref_ready_median": statistics.median(r for r, _, _, _ in direct),
        "ref_total": ref_total,
    }


# -- (b) execute overhead -----------------------------------------------------------------------


async def _ours(client: Client, sid: str, transport: Transport, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        async for ev in client.sessions.execute(sid, "pass", transport=transport):
            if isinstance(ev, Finished):
                assert ev.exit_code == 0
        times.append(time.perf_counter() - t0)
    return times


def _blocking_reference(workdir: Path, repeat: int) -> list[float]:
    workdir.mkdir(parents=True, exist_ok=True)
    km = _SyncKM(connection_file=str(workdir / "kernel.json"))
    km.start_kernel(cwd=str(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        for _ in range(repeat // 5 + 5):  # warm-up
            kc.execute_interactive("pass", timeout=30, output_hook=lambda m: None)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            reply = kc.execute_interactive("pass", timeout=30, output_hook=lambda m: None)
            times.append(time.perf_counter() - t0)
            assert reply["content"]["status"] == "ok"
        return times
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


async def _async_reference(workdir: Path, repeat: int) -> list[float]:
    _, _, km, kc = await direct_start(workdir)
    try:
        for _ in range(repeat // 5 + 5):
            await _direct_run(kc, "pass")
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            await _direct_run(kc, "pass")
            times.append(time.perf_counter() - t0)
        return times
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def bench_execute(server: Server, repeat: int, tmp: Path) -> dict[str, list[float]]:
    async with server.client() as client:
        info = await client.sessions.create(IMAGE, name="bench-exec")
        try:
            await _ours(client, info.id, "websocket", repeat // 5 + 5)  # warm-up
            await _ours(client, info.id, "rest", repeat // 5 + 5)
            ws = await _ours(client, info.id, "websocket", repeat)
            rest = await _ours(client, info.id, "rest", repeat)
        finally:
            await client.sessions.destroy(info.id)
    blocking = await asyncio.to_thread(_blocking_reference, tmp / "kb", repeat)
    direct_async = await _async_reference(tmp / "ka", repeat)
    return {"ws": ws, "rest": rest, "blocking": blocking, "async": direct_async}


# -- (c) upload ---------------------------------------------------------------------------------


def _make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = 16 * MiB
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(block, left))
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(16 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _cp(src: Path, dst: Path) -> float:
    dst.unlink(missing_ok=True)
    os.sync()  # no step pays for the previous one's write-back (as bench/vfolder_transfer.py)
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    took = time.perf_counter() - t0
    dst.unlink()
    return took


async def bench_upload(base: Path, size: int, rounds: int) -> dict[str, float]:
    base.mkdir(parents=True, exist_ok=True)
    src = base / "src.bin"
    want = await asyncio.to_thread(_make_file, src, size)
    cp_times = [await asyncio.to_thread(_cp, src, base / "cp.bin") for _ in range(rounds)]

    server = start_server(base / "srv")
    peak_rss = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_rss
        while not stop.is_set():
            peak_rss = max(peak_rss, server.status().get("VmRSS", 0))
            stop.wait(0.05)

    try:
        async with server.client() as client:
            await client.folders.create("bench")
            before = server.status()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            up_times = []
            cpu0, own0 = server.cpu_seconds(), time.process_time()
            for i in range(rounds):
                await asyncio.to_thread(os.sync)
                t0 = time.perf_counter()
                await client.folders.upload("bench", src, f"big{i}.bin")
                up_times.append(time.perf_counter() - t0)
            cpu_server, cpu_client = server.cpu_seconds() - cpu0, time.process_time() - own0
            stop.set()
            sampler.join()
            after = server.status()
            stored = list((base / "srv" / "data" / "vfolders").glob("*/*/big0.bin"))
            assert len(stored) == 1 and stored[0].stat().st_size == size, stored
            assert await asyncio.to_thread(_sha256, stored[0]) == want, "upload corrupted"
            await client.folders.delete("bench", forever=True)
    finally:
        stop.set()
        server.stop()
    return {
        "cp": min(cp_times),
        "ours": min(up_times),
        "cpu_server": cpu_server / rounds,
        "cpu_client": cpu_client / rounds,
        "rss_before": before["VmRSS"],
        "rss_after": after["VmRSS"],
        "hwm_growth": after["VmHWM"] - before["VmRSS"],
        "rss_peak_growth": peak_rss - before["VmRSS"],
    }


# -- report -------------------------------------------------------------------------------------


def _row(measure: str, ours: str, ref: str, ratio: str, target: str, ok: bool | None) -> str:
    mark = "" if ok is None else ("  ok" if ok else "  MISS")
    return f"{measure:<44} | {ours:>10} | {ref:>10} | {ratio:>7} | {target}{mark}"


async def _compare_layers(base: Path, capacity: tuple[str, ...], n: int,
                          a: dict[str, float]) -> list[str]:
    """(a) again without the user and network namespaces, and without any sandbox."""
    rows: list[str] = []
    for label, sandbox, without in (("without user+network namespaces", "auto", "user,network"),
                                    ("without any sandbox", "none", "")):
        other = start_server(base / f"srv-{sandbox}-{len(rows)}", *capacity, sandbox=sandbox,
                             without=without)
        try:
            p = await bench_sessions(other, n, base / f"direct-{len(rows)}")
        finally:
            other.stop()
        rows.append(_row(
            f"(a) {n} concurrent median: all layers vs {label} s",
            f"{a['ready_median']:.2f}", f"{p['ready_median']:.2f}",
            f"{a['ready_median'] / p['ready_median']:.2f}", "", None))
    starts = await bench_sandbox_start(n, base / "sandboxes")
    rows.append(_row(
        f"(a) {n} concurrent sandbox starts (bwrap+slirp): median/max ms",
        f"{statistics.median(starts) * 1000:.0f}/{max(starts) * 1000:.0f}", "", "", "", None))
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1, help="upload/cp repetitions (best)")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp"))
    parser.add_argument("--only", choices=["a", "b", "c", "d"], action="append")
    parser.add_argument("--net-mib", type=int, default=512, help="(d) MiB per transfer")
    parser.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default="auto",
                        help="serve --sandbox for (a)/(b); (a) is repeated with none to compare")
    args = parser.parse_args()
    only = set(args.only or "abcd")
    base = Path(tempfile.mkdtemp(prefix="bjup-bench-", dir=args.tmp))
    rows = [_row("measure", "ours", "reference", "ratio", "target", None), "-" * 100]
    print(f"# {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, data in {base}",
          flush=True)
    try:
        if only & {"a", "b", "d"}:
            capacity = (f"cpu={max(args.sessions, 2)}", f"mem={2 * max(args.sessions, 2)}g")
            server = start_server(base / "srv-ab", *capacity, sandbox=args.sandbox)
            err = (base / "srv-ab" / "serve.err").read_text()
            sandboxed = "sessions are not isolated" not in err
            print(f"# sessions in a sandbox: {sandboxed}", flush=True)
            try:
                if "a" in only:
                    try:
                        a = await bench_sessions(server, args.sessions, base / "direct")
                    except AssertionError:
                        print((base / "srv-ab" / "serve.err").read_text()[-3000:], flush=True)
                        raise
                    n = args.sessions
                    rows.append(_row(
                        "(a) 1 session alone: create->RUNNING s", f"{a['solo']:.2f}",
                        f"{a['ref_solo']:.2f}", f"{a['solo'] / a['ref_solo']:.2f}", "", None))
                    rows.append(_row(
                        f"(a) {n} concurrent: create->RUNNING median s", f"{a['ready_median']:.2f}",
                        f"{a['ref_ready_median']:.2f}",
                        f"{a['ready_median'] / a['ref_ready_median']:.2f}",
                        "<= 1.5 s", a["ready_median"] <= 1.5))
                    rows.append(_row(
                        f"(a) {n} concurrent: create->RUNNING max s", f"{a['ready_max']:.2f}",
                        "", "", "", None))
                    rows.append(_row(
                        f"(a) {n} concurrent: total (all cells done) s", f"{a['total']:.2f}",
                        f"{a['ref_total']:.2f}", f"{a['total'] / a['ref_total']:.2f}", "", None))
                    if sandboxed:  # the same with fewer layers: what isolation costs
                        rows += await _compare_layers(base, capacity, n, a)
                if "d" in only:
                    async with server.client() as client:
                        d = await bench_network(client, args.net_mib)
                    for label, mine, host in (("service -> host via the app proxy", "proxy",
                                               "host_loopback"),
                                              ("cell <- host address via slirp4netns", "out",
                                               "host_out")):
                        if mine in d and host in d:
                            rows.append(_row(f"(d) {label}: MiB/s", f"{d[mine]:.0f}",
                                             f"{d[host]:.0f}", f"{d[mine] / d[host]:.2f}", "",
                                             None))
                if "b" in only:
                    b = await bench_execute(server, args.repeat, base / "direct-b")
                    ref = statistics.median(b["blocking"]) * 1000
                    for label, key in (("websocket", "ws"), ("REST", "rest")):
                        ours = statistics.median(b[key]) * 1000
                        rows.append(_row(
                            f"(b) `pass` via {label}: median ms", f"{ours:.2f}", f"{ref:.2f}",
                            f"{ours / ref:.2f}", "", None))
                        rows.append(_row(
                            f"(b) `pass` via {label}: overhead ms", f"{ours - ref:.2f}", "0",
                            "", "<= 5 ms", ours - ref <= 5))
                        p90 = statistics.quantiles(b[key], n=10)[-1] * 1000
                        rows.append(_row(f"(b) `pass` via {label}: p90 ms", f"{p90:.2f}", "", "",
                                         "", None))
                    direct_async = statistics.median(b["async"]) * 1000
                    rows.append(_row("(b) direct async jupyter_client (info) ms",
                                     f"{direct_async:.2f}", f"{ref:.2f}",
                                     f"{direct_async / ref:.2f}", "", None))
            finally:
                server.stop()
        if "c" in only:
            size = args.size_mib * MiB
            c = await bench_upload(base / "upload", size, args.rounds)
            mib_s = size / MiB / c["ours"]
            cp_mib_s = size / MiB / c["cp"]
            rows.append(_row(f"(c) {args.size_mib} MiB tus upload vs cp: MiB/s",
                             f"{mib_s:.0f}", f"{cp_mib_s:.0f}", f"{mib_s / cp_mib_s:.2f}",
                             ">= 0.5", mib_s / cp_mib_s >= 0.5))
            rows.append(_row("(c) upload seconds", f"{c['ours']:.2f}", f"{c['cp']:.2f}", "", "",
                             None))
            rows.append(_row("(c) CPU seconds per upload: server/client",
                             f"{c['cpu_server']:.2f}/{c['cpu_client']:.2f}", "", "", "", None))
            growth = max(c["hwm_growth"], c["rss_peak_growth"]) / MiB
            rows.append(_row("(c) server memory growth (VmHWM-VmRSS0) MiB",
                             f"{growth:.1f}", "", "", "<= 64 MiB", growth <= 64))
            rows.append(_row("(c) server VmRSS before/after MiB",
                             f"{c['rss_before'] / MiB:.0f}/{c['rss_after'] / MiB:.0f}", "", "",
                             "", None))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
