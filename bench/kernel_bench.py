"""Proxy-kernel benchmarks: ``python bench/kernel_bench.py [--cluster] [-n 200]``.

* round trip of ``pass`` through the proxy vs a plain ipykernel reached directly (the overhead the
  proxy plus the Backend.AI API add; target <= 15 ms median on the local endpoint);
* time to first output of ``print('x'); time.sleep(3)`` (<= 0.3 s local, <= 0.5 s cluster);
* 50 MB of printed output through the proxy vs a local ipykernel (ratio of the medians of
  ``--repeat`` interleaved runs each; target <= 2.0 on the local endpoint).

Without ``--cluster`` the proxy uses the local endpoint (BACKEND_ENDPOINT unset); with it, the
variables from /tmp/backendai-cluster/user.env.
"""

from __future__ import annotations

import argparse
import os
import statistics
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


def _big_output(kc: Any, mb: int = 50) -> float:
    t0 = time.perf_counter()
    kc.execute_interactive(
        f"for _ in range({mb}):\n    print('y' * (1024 * 1024 - 1))",
        timeout=600,
        output_hook=lambda m: None,
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5, help="50 MB runs per kernel (median)")
    args = ap.parse_args()
    _env(args.cluster)
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
        for _ in range(args.repeat):
            for name, (_km, kc) in kernels.items():
                big[name].append(_big_output(kc))
        for name, times in big.items():
            results[name]["50MB_s"] = statistics.median(times)
    finally:
        for km, kc in kernels.values():
            kc.stop_channels()
            km.shutdown_kernel(now=False)
    direct, proxy = results["python3"], results["backendai-python"]
    where = "cluster" if args.cluster else "local endpoint"
    print(f"proxy via {where}; baseline: a local python3 ipykernel reached directly")
    for key in direct:
        print(f"{key:16} direct {direct[key]:9.3f}   proxy {proxy[key]:9.3f}")
    print(f"pass overhead (median): {proxy['rt_median_ms'] - direct['rt_median_ms']:.1f} ms")
    print(f"50 MB output ratio proxy/direct: {proxy['50MB_s'] / direct['50MB_s']:.2f}")


if __name__ == "__main__":
    main()
