"""Benchmark: a ``--size-mib`` (1024) file uploaded to and downloaded from a vfolder (issue #5
item 8), against references measured in the same run, on the same files.

Local endpoint (``python -m backendai_jupyter serve``, started here): throughput of our client's
``folders.upload`` / ``folders.download`` as a ratio to ``cp`` of the same file on ``--tmp``,
each just after a ``cp`` of the file it reads (the source for uploads, the stored copy for
downloads), interleaved round by round: through the endpoint's same-machine socket (the
default; target >= 0.8) and over HTTP (``BACKEND_LOCAL_TRANSFERS=0``, what any other client
pays); beside each, the endpoint's CPU seconds per GiB and its peak RSS during that transfer
(``VmHWM``, reset through ``clear_refs`` before it), and the load average. Real cluster
(``/tmp/backendai-cluster/user.env``, skipped with a message when it is not up): our client
against the official 26.9.6 CLI, ``$BAI_CLIENT_VENV/bin/backend.ai vfolder upload`` /
``download``; both timed as whole commands (process start to exit; target >= 1.0).
Memory: the peak RSS (``VmHWM``) of the uploading process (our client in a subprocess; the
official CLI's for reference; target <= 150 MiB).

Before every timed step the page cache is flushed (``sync``) so that no step pays for the previous
one's write-back; each measure is the best of ``--rounds``. Downloads are checked by SHA-256.
Everything created (temporary files, vfolders, on the cluster also from the trash bin) is removed.

    .venv/bin/python bench/vfolder_transfer.py [--size-mib 1024] [--rounds 2] [--no-cluster]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backendai_jupyter.client import Client, ClientConfig

# The parent's helpers (server start, file making, hashing) come from local_endpoint.py, imported
# only in the parent: the measured child imports nothing but the client.
sys.path.insert(0, str(Path(__file__).resolve().parent))

MiB = 1024 * 1024
CLUSTER_ENV = Path(os.environ.get("BAI_CLUSTER_ENV", "/tmp/backendai-cluster/user.env"))
MEM_TARGET = 150 * MiB


# -- the child: one transfer with our client, reporting its own time and peak memory ------------


async def _child(op: str, folder: str, local: str, remote: str) -> None:
    async with Client(ClientConfig.from_env()) as client:
        await client.connect()
        t0 = time.perf_counter()
        if op == "upload":
            await client.folders.upload(folder, local, remote)
        else:
            await client.folders.download(folder, remote, local)
        took = time.perf_counter() - t0
    hwm = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    print(json.dumps({"seconds": took, "vmhwm": hwm}))


# -- running and timing commands ----------------------------------------------------------------


@dataclass
class Run:
    wall: float  # process start to exit
    inner: float  # the transfer alone (our child only; else = wall)
    peak_rss: int  # the process's VmHWM, bytes


def _vmhwm(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> Run:
    """Run a command; its wall time and peak RSS (``VmHWM``, polled every 10 ms while it runs).

    (``wait4``'s ``ru_maxrss`` would not do: Linux carries the forking parent's peak over the
    ``exec``.) Our child also reports its own final ``VmHWM``.
    """
    os.sync()
    out = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _vmhwm(proc.pid))
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    out.seek(0)
    text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}… exited {proc.returncode}:\n{text[-3000:]}")
    inner = wall
    for line in text.splitlines()[::-1]:
        if line.startswith("{"):
            data = json.loads(line)
            inner, peak = data["seconds"], max(peak, data["vmhwm"])
            break
    return Run(wall, inner, peak)


def _ours(op: str, folder: str, local: Path, remote: str, env: dict[str, str], cwd: Path) -> Run:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", op, folder, str(local), remote]
    return _timed(cmd, env, cwd)


def _cp(src: Path, dst: Path) -> float:
    dst.unlink(missing_ok=True)
    os.sync()
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    took = time.perf_counter() - t0
    dst.unlink()
    return took


def _best(runs: list[Run]) -> Run:
    return Run(min(r.wall for r in runs), min(r.inner for r in runs), max(r.peak_rss for r in runs))


# -- the two parts -------------------------------------------------------------------------------


@dataclass
class Sample:
    """One transfer on the local endpoint: the client's run and what it cost the endpoint."""

    run: Run
    endpoint_cpu: float  # CPU seconds of the endpoint process during the transfer
    endpoint_peak: int  # the endpoint's peak RSS during the transfer (VmHWM, reset before)
    load: float  # 1-minute load average when it ended


def _reset_peak(pid: int) -> None:
    """Restart the process's ``VmHWM`` from its current RSS (``clear_refs`` 5, Linux >= 4.0)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _measured(server: Any, fn: Any, *args: Any) -> Sample:
    _reset_peak(server.proc.pid)
    cpu0 = server.cpu_seconds()
    run = fn(*args)
    return Sample(run, server.cpu_seconds() - cpu0, server.status()["VmHWM"], os.getloadavg()[0])


async def bench_local(base: Path, src: Path, want: str, rounds: int) -> dict[str, Any]:
    """Per round, interleaved: ``cp``, then upload and download through the same-machine socket
    (``local``) and over HTTP (``http``, ``BACKEND_LOCAL_TRANSFERS=0``: what any other client
    pays)."""
    from local_endpoint import _sha256, start_server

    server = start_server(base / "srv")
    env = {**os.environ, "BACKEND_ENDPOINT": server.url, "BACKEND_ACCESS_KEY": server.access_key,
           "BACKEND_SECRET_KEY": server.secret_key}
    envs = {"local": {**env, "BACKEND_LOCAL_TRANSFERS": "1"},
            "http": {**env, "BACKEND_LOCAL_TRANSFERS": "0"}}
    # Each transfer gets its own cp just before it: on this VM the cost of a copy swings with
    # which memory the kernel hands out (pages freed by a deleted file go back to the host and
    # fault in again when reused), so a reference measured seconds apart is no reference.
    cps: dict[str, list[tuple[float, float]]] = {f"{m}_{op}": [] for m in envs
                                                 for op in ("up", "down")}
    samples: dict[str, list[Sample]] = {key: [] for key in cps}
    dest = base / "down.bin"
    try:
        async with server.client() as client:
            await client.folders.create("bench")
            try:
                for i in range(rounds):
                    for mode, menv in envs.items():
                        remote = f"big{i}-{mode}.bin"
                        cps[f"{mode}_up"].append(await _cp_now(src, base / "cp.bin"))
                        samples[f"{mode}_up"].append(await asyncio.to_thread(
                            _measured, server, _ours, "upload", "bench", src, remote, menv, base))
                        dest.unlink(missing_ok=True)
                        stored = next((base / "srv").rglob(remote))  # cp the very file read
                        cps[f"{mode}_down"].append(await _cp_now(stored, base / "cp.bin"))
                        samples[f"{mode}_down"].append(await asyncio.to_thread(
                            _measured, server, _ours, "download", "bench", dest, remote, menv,
                            base))
                        assert await asyncio.to_thread(_sha256, dest) == want, "download corrupted"
                        dest.unlink()
                        await client.folders.delete_files("bench", [remote])
            finally:
                await client.folders.delete("bench", forever=True)
    finally:
        server.stop()
        dest.unlink(missing_ok=True)
    return {**{k: min(v, key=lambda smp: smp.run.inner) for k, v in samples.items()},
            "cp": {k: min(v) for k, v in cps.items()},
            "peak": {k: max(smp.endpoint_peak for smp in v) for k, v in samples.items()}}


async def _cp_now(src: Path, dst: Path) -> tuple[float, float]:
    """``cp``'s seconds and the load average then."""
    took = await asyncio.to_thread(_cp, src, dst)
    return took, os.getloadavg()[0]


def _cluster_env() -> dict[str, str] | None:
    if not os.access(CLUSTER_ENV, os.R_OK):
        return None
    values = {}
    for line in CLUSTER_ENV.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


async def _cluster_up(env: dict[str, str]) -> str | None:
    """``None`` when the manager answers, else why not."""
    try:
        async with Client(ClientConfig.from_env(env)) as client:
            await client.connect()
    except Exception as e:  # noqa: BLE001 - any failure means "not up"
        return f"{type(e).__name__}: {e}"
    return None


async def bench_cluster(
    base: Path, src: Path, want: str, rounds: int, cenv: dict[str, str]
) -> dict[str, float]:
    from local_endpoint import _sha256

    cli = Path(cenv["BAI_CLIENT_VENV"]) / "bin" / "backend.ai"
    # Credentials through the environment only; the CLI runs in a directory without a .env.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    env.update({k: v for k, v in cenv.items() if k.startswith("BACKEND_")})
    workdir = base / "cli"
    workdir.mkdir(parents=True)
    tag = secrets.token_hex(3)
    ours_folder, cli_folder = f"bjb-{tag}-ours", f"bjb-{tag}-cli"
    host = cenv.get("BAI_VFOLDER_HOST")
    res: dict[str, list[Run]] = {"up": [], "down": [], "cli_up": [], "cli_down": []}
    async with Client(ClientConfig.from_env(cenv)) as client:
        created: list[str] = []
        try:
            for name in (ours_folder, cli_folder):
                await client.folders.create(name, host)
                created.append(name)
            for _ in range(rounds):
                res["cli_up"].append(await asyncio.to_thread(
                    _timed, [str(cli), "vfolder", "upload", cli_folder, src.name], env, src.parent))
                res["up"].append(await asyncio.to_thread(
                    _ours, "upload", ours_folder, src, src.name, env, workdir))
                got = workdir / src.name
                res["cli_down"].append(await asyncio.to_thread(
                    _timed, [str(cli), "vfolder", "download", cli_folder, src.name], env, workdir))
                assert await asyncio.to_thread(_sha256, got) == want, "CLI download corrupted"
                got.unlink()
                res["down"].append(await asyncio.to_thread(
                    _ours, "download", ours_folder, got, src.name, env, workdir))
                assert await asyncio.to_thread(_sha256, got) == want, "our download corrupted"
                got.unlink()
                for name in created:
                    await client.folders.delete_files(name, [src.name])
        finally:
            for name in created:
                try:
                    await client.folders.delete(name, forever=True)  # delete + delete-from-trash
                except Exception as e:  # noqa: BLE001 - report, keep cleaning
                    print(f"# could not delete vfolder {name}: {e}", file=sys.stderr)
    best = {k: _best(v) for k, v in res.items()}
    return {"up": best["up"].wall, "down": best["down"].wall, "cli_up": best["cli_up"].wall,
            "cli_down": best["cli_down"].wall, "up_rss": best["up"].peak_rss,
            "cli_up_rss": best["cli_up"].peak_rss, "down_rss": best["down"].peak_rss,
            "cli_down_rss": best["cli_down"].peak_rss}


# -- report -------------------------------------------------------------------------------------


def _row(measure: str, ours: str, ref: str, ratio: str, target: str, ok: bool | None) -> str:
    mark = "" if ok is None else ("  ok" if ok else "  MISS")
    return f"{measure:<64} | {ours:>9} | {ref:>9} | {ratio:>6} | {target}{mark}"


def _local_rows(loc: dict[str, Any], mib: float) -> list[str]:
    """Throughput against ``cp`` (load average of the run beside it), the endpoint's CPU
    seconds per GiB and its peak RSS during the transfer."""
    rows = []
    for mode, label, target in (("local", "same-machine socket", 0.8), ("http", "HTTP", None)):
        for op in ("up", "down"):
            smp: Sample = loc[f"{mode}_{op}"]
            cp_took, cp_load = loc["cp"][f"{mode}_{op}"]
            cp = mib / cp_took
            speed = mib / smp.run.inner
            ok = None if target is None else speed / cp >= target
            rows.append(_row(
                f"local endpoint, {label}: {op}load MiB/s (ref: cp)", f"{speed:.0f}",
                f"{cp:.0f}", f"{speed / cp:.2f}", f">= {target}" if target else "", ok))
            peak = loc["peak"][f"{mode}_{op}"] / MiB
            rows.append(f"    endpoint: {smp.endpoint_cpu / (mib / 1024):.2f} CPU-s/GiB, peak RSS "
                        f"{peak:.0f} MiB; load average {smp.load:.1f} (cp's: {cp_load:.1f})")
        rows.append(_row(f"local endpoint, {label}: uploading process peak MiB",
                         f"{loc[f'{mode}_up'].run.peak_rss / MiB:.0f}", "", "", "<= 150",
                         loc[f"{mode}_up"].run.peak_rss <= MEM_TARGET))
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2, help="repetitions (best of)")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp"))
    parser.add_argument("--no-cluster", action="store_true")
    parser.add_argument("--no-local", action="store_true")
    args = parser.parse_args()
    from local_endpoint import _make_file

    size = args.size_mib * MiB
    mib = size / MiB
    base = Path(tempfile.mkdtemp(prefix="bjup-vf-bench-", dir=args.tmp))
    print(f"# {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {args.size_mib} MiB, "
          f"best of {args.rounds}, data in {base}", flush=True)
    rows = [_row("measure", "ours", "reference", "ratio", "target", None), "-" * 100]
    try:
        src = base / "big.bin"
        want = await asyncio.to_thread(_make_file, src, size)
        if not args.no_local:
            rows += _local_rows(await bench_local(base / "local", src, want, args.rounds), mib)
        cenv = None if args.no_cluster else _cluster_env()
        why = "--no-cluster" if args.no_cluster else (
            f"{CLUSTER_ENV} not readable" if cenv is None else await _cluster_up(cenv))
        if cenv is not None and why is None:
            cl = await bench_cluster(base / "cluster", src, want, args.rounds, cenv)
            for op in ("up", "down"):
                ours, ref = mib / cl[op], mib / cl[f"cli_{op}"]
                rows.append(_row(f"cluster: {op}load MiB/s, whole command (ref: CLI)",
                                 f"{ours:.0f}", f"{ref:.0f}", f"{ours / ref:.2f}", ">= 1.0",
                                 ours / ref >= 1.0))
            for op in ("up", "down"):
                ours_rss, ref_rss = cl[f"{op}_rss"] / MiB, cl[f"cli_{op}_rss"] / MiB
                rows.append(_row(f"cluster: {op}loading process peak MiB (ref: CLI)",
                                 f"{ours_rss:.0f}", f"{ref_rss:.0f}", f"{ours_rss / ref_rss:.2f}",
                                 "<= 150" if op == "up" else "",
                                 ours_rss <= 150 if op == "up" else None))
        else:
            print(f"# cluster part skipped: {why}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("\n".join(rows))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        asyncio.run(_child(*sys.argv[2:]))
    else:
        asyncio.run(main())
