"""Soak: N create → execute → destroy cycles against one ``serve`` process (issue 11 item 8).

After a warm-up (the first cycles load modules and fill caches), it measures what the endpoint
leaks per cycle: processes (the endpoint's descendants, the sessions' memory cgroups and
service-socket directories), open file descriptors, and resident memory (``VmRSS``). Targets:
no leaked process, open files stable within ±10, RSS growth ≤ 32 MiB over the cycles. Prints a
table and exits 1 when a target is missed.

    .venv/bin/python bench/endpoint_soak.py [--cycles 200] [--warmup 10] [--sandbox auto]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backendai_jupyter.client import Client, ClientConfig, Finished, Output, parse_endpoints

IMAGE = "cr.backend.ai/stable/python:3.13-ubuntu24.04"
MiB = 2**20


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            out.setdefault(int(stat[stat.rfind(")") + 2 :].split()[1]), []).append(int(entry))
    return out


def descendants(pid: int) -> set[int]:
    kids = _children()
    found: set[int] = set()
    todo = [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def leftovers(session_ids: list[str]) -> tuple[int, int]:
    """Memory cgroups and service-socket directories left by these (destroyed) sessions."""
    cgroups = set(glob.glob("/sys/fs/cgroup/memory/**/bjup-*", recursive=True))
    cgroups |= set(glob.glob("/sys/fs/cgroup/**/bjup-*", recursive=True))
    sockdirs = glob.glob(os.path.join(tempfile.gettempdir(), "bjup-????????-*"))
    ours_cg = {c for c in cgroups if any(c.endswith(f"bjup-{sid}") for sid in session_ids)}
    prefixes = {f"bjup-{sid[:8]}-" for sid in session_ids}
    ours_sock = {d for d in sockdirs if os.path.basename(d)[:14] in prefixes}
    return len(ours_cg), len(ours_sock)


async def cycle(client: Client, i: int) -> str:
    info = await client.sessions.create(IMAGE, name=f"soak-{i}",
                                        resources={"cpu": "1", "mem": "256m"})
    text = ""
    async for ev in client.sessions.execute(info.id, f"print({i} * 2)"):
        if isinstance(ev, Output):
            text += ev.item.data
        elif isinstance(ev, Finished):
            assert ev.exit_code == 0, text
    assert text.strip() == str(i * 2), text
    await client.sessions.destroy(info.id)
    return info.id


async def run(args: argparse.Namespace) -> int:
    base = Path(tempfile.mkdtemp(prefix="bjup-soak-"))
    cmd = [sys.executable, "-m", "backendai_jupyter", "serve", "--port", "0", "--data-dir",
           str(base / "data"), "--sandbox", args.sandbox]
    out, err = (base / "serve.out").open("wb"), (base / "serve.err").open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in (text := (base / "serve.out").read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((base / "serve.err").read_text()[-2000:])
            await asyncio.sleep(0.05)
        env = dict(re.findall(r"^export (BACKEND_\w+)=(.*)$", text, re.M))
        config = ClientConfig(endpoints=parse_endpoints(env["BACKEND_ENDPOINT"]),
                              access_key=env["BACKEND_ACCESS_KEY"],
                              secret_key=env["BACKEND_SECRET_KEY"])
        notes = (base / "serve.err").read_text().strip()
        print(f"# {os.cpu_count()} CPUs; serve --sandbox {args.sandbox}"
              + (f"; {notes}" if notes else ""), flush=True)
        async with Client(config) as client:
            for i in range(args.warmup):
                await cycle(client, i)
            await asyncio.sleep(1.0)  # let the last destroy's stragglers exit
            procs0 = descendants(proc.pid)
            fds0, rss0 = open_fds(proc.pid), rss(proc.pid)
            ids: list[str] = []
            t0 = time.perf_counter()
            for i in range(args.cycles):
                ids.append(await cycle(client, args.warmup + i))
                if (i + 1) % 50 == 0:
                    print(f"# {i + 1} cycles: {time.perf_counter() - t0:.0f} s, "
                          f"RSS {rss(proc.pid) / MiB:.1f} MiB, fds {open_fds(proc.pid)}",
                          flush=True)
            elapsed = time.perf_counter() - t0
            await asyncio.sleep(1.0)
            procs1 = descendants(proc.pid)
            fds1, rss1, left1 = open_fds(proc.pid), rss(proc.pid), leftovers(ids)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        err.close()
        shutil.rmtree(base, ignore_errors=True)
    leaked = procs1 - procs0
    growth = (rss1 - rss0) / MiB
    rows = [
        ("cycles (create → execute → destroy)", f"{args.cycles}",
         f"{elapsed / args.cycles * 1000:.0f} ms each", "", None),
        ("endpoint descendants before/after", f"{len(procs0)}/{len(procs1)}",
         f"new: {len(leaked)}", "no new", not leaked),
        ("their cgroups / socket dirs left", f"{left1[0]}/{left1[1]}", "", "none left",
         left1 == (0, 0)),
        ("open files before/after", f"{fds0}/{fds1}", f"{fds1 - fds0:+d}", "±10",
         abs(fds1 - fds0) <= 10),
        ("endpoint RSS before/after MiB", f"{rss0 / MiB:.1f}/{rss1 / MiB:.1f}",
         f"{growth:+.1f} MiB", "≤ 32 MiB", growth <= 32),
    ]
    print(f"{'measure':40} | {'value':>14} | {'delta':>16} | target")
    print("-" * 96)
    ok = True
    for name, value, delta, target, good in rows:
        mark = "" if good is None else ("  ok" if good else "  MISS")
        ok = ok and good is not False
        print(f"{name:40} | {value:>14} | {delta:>16} | {target}{mark}")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default="auto")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
