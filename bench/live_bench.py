"""Live-output benchmark: ``python bench/live_bench.py [--server local|26.9|24.3 ...] [--restart]``.

For each server and execute transport, through the proxy kernel, beside a local ipykernel
measured in the same run:

* **first**: seconds from sending ``print('first'); time.sleep(3)`` to its stream message
  (target <= 0.3 s on the clusters);
* **lag p50/p95**: a loop printing a time stamp every 0.2 s for 6 s; lag = arrival - stamp
  (the servers run on this machine, so both clocks are the same; target p95 <= 0.3 s);
* **restart** (``--restart``, clusters only): the manager is restarted (``cluster.sh restart
  manager``) 2 s into a 0.2 s loop of 60 lines; the result says whether every line arrived
  once, in order, and whether a variable set before the cell is still there afterwards.

Servers: ``local`` (the embedded endpoint, BACKEND_ENDPOINT unset), ``26.9``
(/tmp/backendai-cluster/user.env), ``24.3`` (/tmp/backendai-cluster-24.3/user.env).
Timings here are taken on a shared, loaded machine: compare each row with the local ipykernel's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager, start_new_kernel

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SH = Path(os.environ.get("BAI_CLUSTER_DIR") or next(
    (p / "shared" / "backendai-cluster" for p in ROOT.parents if (p / "shared").is_dir()),
    ROOT.parent / "shared" / "backendai-cluster",
)) / "cluster.sh"
ENV_FILES = {
    "26.9": Path("/tmp/backendai-cluster/user.env"),
    "24.3": Path("/tmp/backendai-cluster-24.3/user.env"),
}
VERSIONS = {"26.9": "26.9.6", "24.3": "24.3.11"}
FIRST = "import time\nprint('first', flush=True)\ntime.sleep(3)"
LOOP = (
    "import time\nfor i in range({n}):\n"
    "    print('L', i, time.time(), flush=True)\n    time.sleep(0.2)"
)


def kernel_env(server: str, transport: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    env["JUPYTER_PATH"] = str(ROOT / "share" / "jupyter")
    env["BACKEND_EXECUTE_TRANSPORT"] = transport
    if server != "local":
        for line in ENV_FILES[server].read_text().splitlines():
            key, _, value = line.partition("=")
            if key:
                env[key] = value
        env["BACKEND_IMAGE"] = env["BAI_IMAGE"]
        env["BACKEND_OUTAGE_LIMIT"] = "120"
    return env


def first_output(kc: Any) -> float:
    t0 = time.time()
    seen: list[float] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream" and "first" in msg["content"]["text"] and not seen:
            seen.append(time.time() - t0)

    kc.execute_interactive(FIRST, timeout=120, output_hook=hook)
    return seen[0] if seen else float("nan")


def loop_lines(kc: Any, n: int, during: Any = None) -> list[tuple[int, float]]:
    """Run the print loop; (line number, lag) for every line, in arrival order."""
    lines: list[tuple[int, float]] = []
    buf = [""]

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] != "stream" or msg["content"]["name"] != "stdout":
            return
        now = time.time()
        buf[0] += msg["content"]["text"]
        *complete, buf[0] = buf[0].split("\n")
        for line in complete:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "L":
                lines.append((int(parts[1]), now - float(parts[2])))

    if during is not None:
        threading.Timer(2.0, during).start()
    kc.execute_interactive(LOOP.format(n=n), timeout=300, output_hook=hook)
    return lines


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def restart_check(kc: Any, server: str) -> str:
    kc.execute_interactive("kept = 42", timeout=60)

    def restart() -> None:
        env = {**os.environ, "BAI_VERSION": VERSIONS[server]}
        subprocess.run([str(CLUSTER_SH), "restart", "manager"], env=env, check=True,
                       capture_output=True, timeout=240)

    lines = loop_lines(kc, 60, during=restart)
    numbers = [i for i, _ in lines]
    state: list[str] = []
    kc.execute_interactive("print(kept)", timeout=120, output_hook=lambda m: state.append(
        m["content"].get("text", "") if m["msg_type"] == "stream" else ""))
    once = numbers == list(range(60))
    kept = "42" in "".join(state)
    return f"{'ok' if once and kept else 'FAILED'} ({len(numbers)}/60 lines in order: {once}; " \
           f"state kept: {kept})"


def measure(name: str, km: KernelManager, kc: Any, server: str, restart: bool) -> str:
    kc.execute_interactive("import time", timeout=300)  # starts the session
    firsts = [first_output(kc) for _ in range(3)]
    first = statistics.median(firsts)
    print(name, "first outputs", [round(f, 3) for f in firsts], flush=True)
    lags = [lag for _, lag in loop_lines(kc, 30)]
    row = (f"{name:<34} first {first:6.3f} s   lag p50 {percentile(lags, 0.5):6.3f} s   "
           f"p95 {percentile(lags, 0.95):6.3f} s")
    if restart and server != "local" and "ipykernel" not in name:
        row += f"   restart: {restart_check(kc, server)}"
    return row


def start(env: dict[str, str], kernel: str) -> tuple[KernelManager, Any]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        return start_new_kernel(kernel_name=kernel)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", action="append", choices=("local", "26.9", "24.3"))
    ap.add_argument("--transport", action="append", choices=("rest", "websocket"))
    ap.add_argument("--restart", action="store_true", help="restart each cluster's manager")
    args = ap.parse_args()
    servers = args.server or ["local", "26.9", "24.3"]
    transports = args.transport or ["rest", "websocket"]
    km, kc = start(kernel_env("local", "rest"), "python3")
    try:
        print(measure("local ipykernel", km, kc, "local", False), flush=True)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    for server in servers:
        if server != "local" and not ENV_FILES[server].exists():
            print(f"{server}: no cluster ({ENV_FILES[server]} missing)")
            continue
        for transport in transports:
            km, kc = start(kernel_env(server, transport), "backendai-python")
            try:
                # a websocket run cannot survive a restart (it would also wedge the session)
                restart = args.restart and transport == "rest"
                print(measure(f"proxy {server} {transport}", km, kc, server, restart), flush=True)
            finally:
                kc.stop_channels()
                km.shutdown_kernel(now=False)


if __name__ == "__main__":
    main()
