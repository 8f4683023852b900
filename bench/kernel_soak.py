"""Kernel soak against the real cluster: ``python bench/kernel_soak.py [-n 100] [--kill-every 10]``.

N cycles of: start a "Backend.AI Python (remote GPU)" kernel → run one cell (which creates the
session) → shut the kernel down; every ``--kill-every``-th kernel process is SIGKILLed instead,
leaving its session behind for the orphan cleanup of the next kernel start. At the end one more
kernel start cleans up the last orphans, and the script checks that no session of the soak is
left. Per-cycle times are printed, with a reference measured in the same run: the bare client
doing the same (create session → execute → destroy), and the ratio of the two.

Reads the cluster's credentials from ``/tmp/backendai-cluster/user.env`` (``BAI_CLUSTER_ENV``).
Session records go to a private state directory, so other kernels on the machine are untouched.
Exit status 1 if a session is left or a cell failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager, start_new_kernel

from backendai_jupyter.client import Client, ClientConfig, Output

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "backendai-python"


def _cluster_env() -> dict[str, str]:
    path = Path(os.environ.get("BAI_CLUSTER_ENV", "/tmp/backendai-cluster/user.env"))
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip()
    return values


def _setup_env(env: dict[str, str], state_dir: Path) -> None:
    os.environ["JUPYTER_PATH"] = str(ROOT / "share" / "jupyter")
    os.environ.update(env)
    os.environ["BACKEND_IMAGE"] = env["BAI_IMAGE"]
    os.environ["BACKENDAI_JUPYTER_STATE_DIR"] = str(state_dir)


def _cell(kc: Any, code: str) -> str:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, timeout=180, output_hook=hook)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed: {reply['content'].get('evalue')}")
    return "".join(out)


def kernel_cycle(i: int, kill: bool, state_dir: Path, names: set[str]) -> float:
    started = time.perf_counter()
    km: KernelManager
    km, kc = start_new_kernel(kernel_name=KERNEL, startup_timeout=120)
    try:
        text = _cell(kc, f"print('cycle', {i})")
        if text != f"cycle {i}\n":
            raise RuntimeError(f"cycle {i}: unexpected output {text!r}")
    finally:
        names.update(p.stem for p in state_dir.glob("*.json"))  # the session this kernel made
        kc.stop_channels()
        if kill:
            pid = km.provisioner.pid if km.provisioner is not None else None  # type: ignore[attr-defined]
            if pid:
                os.kill(pid, signal.SIGKILL)
            # Reap it (as a notebook server would), so that its pid is really gone.
            km.shutdown_kernel(now=True)
        else:
            km.shutdown_kernel(now=False)
    return time.perf_counter() - started


async def client_cycle(config: ClientConfig, image: str, i: int) -> float:
    started = time.perf_counter()
    async with Client(config) as client:
        info = await client.sessions.create(image, resources={"cpu": "1", "mem": "1g"})
        try:
            pieces = [
                str(ev.item.data)
                async for ev in client.sessions.execute(info.id, f"print('cycle', {i})")
                if isinstance(ev, Output)
            ]
            text = "".join(pieces)
            if text != f"cycle {i}\n":
                raise RuntimeError(f"reference cycle {i}: unexpected output {text!r}")
        finally:
            await client.sessions.destroy(info.id)
    return time.perf_counter() - started


async def sessions_left(config: ClientConfig, names: set[str]) -> list[dict[str, Any]]:
    async with Client(config) as client:
        live = await client.sessions.list(fields=("id", "name", "status"))
    return [s for s in live if s.get("name") in names and s.get("status") != "TERMINATING"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="kernel cycles (default 100)")
    parser.add_argument("--kill-every", type=int, default=10, help="SIGKILL every k-th kernel")
    parser.add_argument("--reference", type=int, default=3, help="bare client cycles")
    args = parser.parse_args()
    env = _cluster_env()
    config = ClientConfig.from_env(env)
    state_dir = Path(tempfile.mkdtemp(prefix="bjup-soak-"))
    _setup_env(env, state_dir)
    os.environ.setdefault("JUPYTER_RUNTIME_DIR", str(state_dir / "runtime"))

    ref = [asyncio.run(client_cycle(config, env["BAI_IMAGE"], i)) for i in range(args.reference)]
    print(f"reference (client create → execute → destroy): median {statistics.median(ref):.2f} s")

    times: list[float] = []
    failures = 0
    names: set[str] = set()
    for i in range(args.n):
        kill = args.kill_every > 0 and (i + 1) % args.kill_every == 0
        try:
            elapsed = kernel_cycle(i, kill, state_dir, names)
        except Exception as e:  # a failed cycle is reported and counted; the soak goes on
            failures += 1
            print(f"cycle {i + 1:3d}/{args.n}  FAILED: {e}", flush=True)
            continue
        times.append(elapsed)
        tag = "  (kernel SIGKILLed)" if kill else ""
        print(f"cycle {i + 1:3d}/{args.n}  {elapsed:6.2f} s{tag}", flush=True)

    # One more kernel start runs the orphan cleanup for the last killed kernels.
    km, kc = start_new_kernel(kernel_name=KERNEL, startup_timeout=120)
    deadline = time.monotonic() + 60  # the cleanup runs as the kernel's loop starts
    while any(state_dir.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.5)
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    left = asyncio.run(sessions_left(config, names))
    records = sorted(p.stem for p in state_dir.glob("*.json"))

    if times:
        median, reference = statistics.median(times), statistics.median(ref)
        print(
            f"kernel cycles: {len(times)} ok, {failures} failed; median {median:.2f} s, "
            f"max {max(times):.2f} s; ratio to the bare client: {median / reference:.2f}"
        )
    print(f"sessions left after orphan cleanup: {len(left)} {[s['name'] for s in left]}")
    print(f"records left in the state directory: {len(records)} {records}")
    return 1 if left or failures else 0


if __name__ == "__main__":
    sys.exit(main())
