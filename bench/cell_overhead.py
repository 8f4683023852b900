"""Per-cell overhead of the proxy kernel, interleaved: ``python bench/cell_overhead.py [-n 400]
[--reference CHECKOUT]``.

One ``pass`` per round on a local ipykernel, on the proxy of this checkout and (with
``--reference``, e.g. ``git archive main | tar -x -C /tmp/ref``) on the proxy of another
checkout, in rotated order, so that the shared machine's load drift hits every kernel alike.
Prints medians, p90s, each proxy's overhead over the local ipykernel, the paired per-round
difference and the load average before and after. Each proxy starts its own local endpoint (a
data directory of its own in the scratch directory, stopped at the end), so the endpoint runs
the same checkout as its proxy. Kernels start in a scratch directory: ``python -m`` would
otherwise import the package of the current directory for both proxies.
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


def _which(kc: Any) -> str:
    got: list[dict[str, Any]] = []
    code = "%%local\nimport backendai_jupyter as b\nprint(b.__file__)"
    kc.execute_interactive(code, timeout=60, output_hook=got.append)
    return "".join(m["content"]["text"] for m in got if m["msg_type"] == "stream").strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=400, help="rounds")
    ap.add_argument("--reference", type=Path, help="another checkout's root, to compare with")
    args = ap.parse_args()
    os.environ["JUPYTER_PATH"] = str(ROOT / "share" / "jupyter")
    for k in ("BACKEND_ENDPOINT", "BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY"):
        os.environ.pop(k, None)
    roots = {"this": ROOT}
    if args.reference is not None:
        roots["reference"] = args.reference.resolve()
    print(f"load average before: {_load()}")
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        data = {name: Path(scratch, f"data-{name}") for name in roots}
        envs = {
            name: {
                **os.environ,
                "PYTHONPATH": str(root),
                "BACKENDAI_JUPYTER_DATA_DIR": str(data[name]),
            }
            for name, root in roots.items()
        }
        kernels = {"direct": start_new_kernel(kernel_name="python3")}
        kernels.update(
            {
                name: start_new_kernel(kernel_name="backendai-python", env=env)
                for name, env in envs.items()
            }
        )
        try:
            _measure(kernels, args.n)
        finally:
            for km, kc in kernels.values():
                kc.stop_channels()
                km.shutdown_kernel(now=True)
            for path in data.values():
                _stop_endpoint(path)
    print(f"load average after: {_load()}")


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _stop_endpoint(data_dir: Path) -> None:
    """End the local endpoint a proxy started for ``data_dir`` (it would idle on for 30 min)."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        pid = int(json.loads((data_dir / "endpoint.json").read_text())["pid"])
        os.kill(pid, signal.SIGTERM)


def _measure(kernels: dict[str, Any], n: int) -> None:
    for name, (_km, kc) in kernels.items():
        kc.execute_interactive("pass", timeout=180)  # the proxies start their sessions
        if name != "direct":
            print(f"{name}: {_which(kc)}")
    names = list(kernels)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            kc = kernels[name][1]
            t0 = time.perf_counter()
            kc.execute_interactive("pass", timeout=60, output_hook=lambda m: None)
            times[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(t) * 1000 for name, t in times.items()}
    for name, t in times.items():
        p90 = statistics.quantiles(t, n=10)[-1] * 1000
        over = f"   overhead {median[name] - median['direct']:6.2f} ms" if name != "direct" else ""
        print(f"{name:9} median {median[name]:6.2f} ms   p90 {p90:6.2f} ms{over}")
    if "reference" in times:
        paired = [b - a for a, b in zip(times["reference"], times["this"], strict=True)]
        print(f"paired this - reference: median {statistics.median(paired) * 1000:+.2f} ms")


if __name__ == "__main__":
    main()
