"""Proxy-kernel benchmarks: ``python bench/kernel_bench.py [--cluster] [-n 200]``.

* round trip of ``pass`` through the proxy vs a plain ipykernel reached directly (the overhead the
  proxy plus the Backend.AI API add; target <= 15 ms median on the local endpoint);
* time to first output of ``print('x'); time.sleep(3)`` (<= 0.3 s local, <= 0.5 s cluster);
* 50 MB of printed output through the proxy vs a local ipykernel (ratio of the medians of
  ``--repeat`` interleaved runs each; target <= 1.5 on the local endpoint, 2.0 on a cluster),
  and the proxy kernel's peak RSS (VmHWM) after them; a run that did not deliver all 50 MiB is
  reported (a stock agent truncates any single stdout record at 10 MiB);
* 300 updates of one display (``display_id``) through the proxy vs a local ipykernel (target
  <= 1.5);
* where the CPU of one more 50 MB cell goes, per process of this machine (``/proc``, all of
  them: on a cluster on the same machine, its manager, agent and runner too), for both kernels.

Every run's time is printed besides the medians, and the load average at the end: the machine
may be shared, compare only ratios measured in the same run.

Without ``--cluster`` the proxy uses the local endpoint (BACKEND_ENDPOINT unset), one of its
own (a fresh data directory, stopped at the end): the shared default one may run older code;
with it, the variables from /tmp/backendai-cluster/user.env.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parents[1]


def _env(cluster: bool) -> None:
    os.environ["JUPYTER_PATH"] = str(ROOT / "share" / "jupyter")
    for k in ("BACKEND_ENDPOINT", "BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY"):
        os.environ.pop(k, None)
    if cluster:
        for line in Path("/tmp/backendai-cluster/user.env").read_text().splitlines():
            key, _, value = line.partition("=")
            if key:
                os.environ[key] = value
        os.environ["BACKEND_IMAGE"] = os.environ["BAI_IMAGE"]


def _round_trips(kc: Any, n: int) -> list[float]:
    kc.execute_interactive("pass", timeout=120)  # warm up (creates the session for the proxy)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        kc.execute_interactive("pass", timeout=60, output_hook=lambda m: None)
        out.append(time.perf_counter() - t0)
    return out


def _first_output(kc: Any) -> float:
    t0 = time.perf_counter()
    first: list[float] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream" and not first:
            first.append(time.perf_counter() - t0)

    kc.execute_interactive("import time\nprint('x')\ntime.sleep(3)", timeout=60, output_hook=hook)
    return first[0]


def _big_output(kc: Any, mb: int = 50) -> tuple[float, int]:
    """Seconds, and the characters of stdout that arrived (all of them: 50 MiB)."""
    received = [0]

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            received[0] += len(msg["content"]["text"])

    t0 = time.perf_counter()
    kc.execute_interactive(
        f"for _ in range({mb}):\n    print('y' * (1024 * 1024 - 1))",
        timeout=600,
        output_hook=hook,
    )
    return time.perf_counter() - t0, received[0]


def _display_updates(kc: Any, n: int = 300) -> float:
    t0 = time.perf_counter()
    kc.execute_interactive(
        f"h = display('0', display_id=True)\nfor i in range({n}):\n    h.update(str(i))",
        timeout=600,
        output_hook=lambda m: None,
    )
    return time.perf_counter() - t0


# Who a process is, by its command line (the first pattern that matches).
_ROLES = (
    ("backend.ai: manager", "manager"),
    ("backend.ai: agent", "agent"),
    ("storage-proxy", "storage proxy"),
    ("ai.backend.kernel", "runner"),
    ("backendai_jupyter.kernel", "proxy kernel"),
    ("backendai_jupyter serve", "local endpoint"),
    ("zygote", "session kernel"),
    ("ipykernel_launcher", "kernel"),
    ("postgres", "database"),
    ("etcd", "etcd"),
    ("redis", "redis"),
)


def _cpu_by_process() -> dict[int, tuple[int, str]]:
    """Every process's CPU so far (user+system of it and its waited-for children, in clock
    ticks) and its role."""
    out: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        role = "front-end" if int(entry) == os.getpid() else "other"
        for pattern, name in _ROLES:
            if pattern in cmd:
                role = name
                break
        out[int(entry)] = (sum(int(x) for x in fields[11:15]), role)
    return out


def _cpu_split(kc: Any) -> tuple[float, dict[str, float]]:
    """One more 50 MB cell: its seconds and the CPU-seconds each role spent meanwhile."""
    before = _cpu_by_process()
    seconds, _ = _big_output(kc)
    tick = os.sysconf("SC_CLK_TCK")
    spent: dict[str, float] = {}
    for pid, (ticks, role) in _cpu_by_process().items():
        used = ticks - before.get(pid, (0, role))[0]
        if used > 0:
            spent[role] = spent.get(role, 0.0) + used / tick
    return seconds, spent


def _peak_rss_mb(km: Any) -> float:
    """The kernel process's peak resident set size (VmHWM), in MB; NaN where unknown."""
    pid = getattr(km.provisioner, "pid", None)
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return float("nan")
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5, help="50 MB runs per kernel (median)")
    args = ap.parse_args()
    _env(args.cluster)
    if not args.cluster:
        os.environ["BACKENDAI_JUPYTER_DATA_DIR"] = tempfile.mkdtemp(prefix="kernel-bench-")
    results: dict[str, dict[str, float]] = {}
    kernels = {name: start_new_kernel(kernel_name=name) for name in ("python3", "backendai-python")}
    try:
        for name, (_km, kc) in kernels.items():
            rt = _round_trips(kc, args.n)
            results[name] = {
                "rt_median_ms": statistics.median(rt) * 1000,
                "rt_p90_ms": statistics.quantiles(rt, n=10)[-1] * 1000,
                "first_output_s": _first_output(kc),
            }
        # Interleaved, so that a change in the machine's load hits both sides alike.
        big: dict[str, list[float]] = {name: [] for name in kernels}
        updates: dict[str, list[float]] = {name: [] for name in kernels}
        for _ in range(args.repeat):
            for name, (_km, kc) in kernels.items():
                seconds, received = _big_output(kc)
                big[name].append(seconds)
                if received != 50 << 20:
                    print(f"{name}: the 50 MB cell delivered {received} of {50 << 20} chars")
                updates[name].append(_display_updates(kc))
        for name, times in big.items():
            print(f"{name:17} 50 MB runs (s): {' '.join(f'{t:.3f}' for t in times)}")
            print(f"{name:17} 300 updates (s): {' '.join(f'{t:.3f}' for t in updates[name])}")
            results[name]["50MB_s"] = statistics.median(times)
            results[name]["300_updates_s"] = statistics.median(updates[name])
            results[name]["peak_rss_MB"] = _peak_rss_mb(kernels[name][0])
        for name, (_km, kc) in kernels.items():
            seconds, spent = _cpu_split(kc)
            parts = ", ".join(f"{role} {t:.2f}" for role, t in
                              sorted(spent.items(), key=lambda x: -x[1]) if t >= 0.01)
            print(f"{name:17} one more 50 MB cell: {seconds:.3f} s, CPU-s {sum(spent.values()):.2f}"
                  f" ({parts})")
    finally:
        for km, kc in kernels.values():
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        if not args.cluster:
            _stop_endpoint(Path(os.environ["BACKENDAI_JUPYTER_DATA_DIR"]))
    direct, proxy = results["python3"], results["backendai-python"]
    where = "cluster" if args.cluster else "local endpoint"
    print(f"proxy via {where}; baseline: a local python3 ipykernel reached directly")
    print("load average (1/5/15 min) at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    for key in direct:
        print(f"{key:16} direct {direct[key]:9.3f}   proxy {proxy[key]:9.3f}")
    print(f"pass overhead (median): {proxy['rt_median_ms'] - direct['rt_median_ms']:.1f} ms")
    print(f"50 MB output ratio proxy/direct: {proxy['50MB_s'] / direct['50MB_s']:.2f}")
    print(f"300 display updates ratio: {proxy['300_updates_s'] / direct['300_updates_s']:.2f}")
    print(
        f"proxy kernel peak RSS (after the 50 MB cells): {proxy['peak_rss_MB']:.0f} MB"
        f" (direct ipykernel's own: {direct['peak_rss_MB']:.0f} MB)"
    )


def _stop_endpoint(data_dir: Path) -> None:
    """End the local endpoint the proxy started for ``data_dir`` (it would idle on)."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        pid = int(json.loads((data_dir / "endpoint.json").read_text())["pid"])
        os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
