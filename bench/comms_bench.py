"""Comms across the proxy: ``python bench/comms_bench.py [--cluster] [-n 50] [--updates 2000]``.

* **Round trip**: a front-end ``comm_msg`` (a slider update) to a remote ``observe`` handler that
  sets a label, until the label's update comes back (parent: our message); median and p90.
  Targets: <= 50 ms on the local endpoint, <= 150 ms on the real cluster.
* **Widget update loop**: ``tqdm.auto`` over ``--updates`` items with ``miniters=1`` and
  ``mininterval=0`` (one widget update per item): the cell's wall time through the proxy vs a
  local ipykernel (target ratio <= 1.5); every final value checked (the bar at N/N, every update
  seen by the client).

The reference is a local ``python3`` ipykernel reached directly, measured in the same run.
Without ``--cluster`` the proxy uses the local endpoint (BACKEND_ENDPOINT unset); with it, the
variables from /tmp/backendai-cluster/user.env.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parents[1]

SETUP = (
    "import ipywidgets as w\n"
    "sl = w.IntSlider(0, max=10**9)\n"
    "lab = w.Label('')\n"
    "sl.observe(lambda ch: setattr(lab, 'value', str(ch['new'])), 'value')\n"
    "display(sl, lab)\n"
)


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


def _run(kc: Any, code: str) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    reply = kc.execute_interactive(code, timeout=600, output_hook=msgs.append)
    if reply["content"]["status"] != "ok":
        raise SystemExit(f"cell failed: {reply['content']}")
    return msgs


def _model_comm(msgs: list[dict[str, Any]], model: str) -> str:
    for m in msgs:
        if m["msg_type"] == "comm_open":
            if m["content"]["data"].get("state", {}).get("_model_name") == model:
                return str(m["content"]["comm_id"])
    raise SystemExit(f"no {model} was opened")


def _round_trips(kc: Any, n: int) -> list[float]:
    msgs = _run(kc, SETUP)
    slider, label = _model_comm(msgs, "IntSliderModel"), _model_comm(msgs, "LabelModel")
    times = []
    for i in range(1, n + 1):
        content = {
            "comm_id": slider,
            "data": {"method": "update", "state": {"value": i}, "buffer_paths": []},
        }
        msg = kc.session.msg("comm_msg", content)
        t0 = time.perf_counter()
        kc.shell_channel.send(msg)
        while True:
            try:
                got = kc.get_iopub_msg(timeout=30)
            except queue.Empty:
                raise SystemExit(f"no answer to update {i}") from None
            if (
                got["msg_type"] == "comm_msg"
                and got["parent_header"].get("msg_id") == msg["header"]["msg_id"]
                and got["content"]["comm_id"] == label
            ):
                if got["content"]["data"]["state"]["value"] != str(i):
                    raise SystemExit(f"wrong echo for {i}: {got['content']}")
                times.append(time.perf_counter() - t0)
                break
    return times


def _pass_cells(kc: Any, n: int) -> list[float]:
    """Round trips of an empty cell: the floor any remote execution stands on."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        kc.execute_interactive("pass", timeout=60, output_hook=lambda m: None)
        times.append(time.perf_counter() - t0)
    return times


def _update_loop(kc: Any, n: int) -> tuple[float, int, float]:
    """Wall time of the loop cell, widget updates seen, the bar's last value."""
    _run(kc, "from tqdm.auto import tqdm")
    t0 = time.perf_counter()
    msgs = _run(kc, f"for i in tqdm(range({n}), miniters=1, mininterval=0):\n    pass")
    took = time.perf_counter() - t0
    bar = _model_comm(msgs, "FloatProgressModel")
    values = [
        m["content"]["data"]["state"]["value"]
        for m in msgs
        if m["msg_type"] == "comm_msg"
        and m["content"]["comm_id"] == bar
        and "value" in m["content"]["data"].get("state", {})
    ]
    return took, len(values), values[-1] if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--updates", type=int, default=2000)
    args = ap.parse_args()
    _env(args.cluster)
    results: dict[str, dict[str, float]] = {}
    for name in ("python3", "backendai-python"):
        km, kc = start_new_kernel(kernel_name=name, startup_timeout=120)
        try:
            _run(kc, "pass")  # the proxy starts its session here
            rt = _round_trips(kc, args.n)
            cells = _pass_cells(kc, args.n)
            took, seen, last = _update_loop(kc, args.updates)
            if last != args.updates:
                raise SystemExit(f"{name}: the bar ended at {last}, not {args.updates}")
            results[name] = {
                "rt_median_ms": statistics.median(rt) * 1000,
                "rt_p90_ms": statistics.quantiles(rt, n=10)[-1] * 1000,
                "pass_cell_ms": statistics.median(cells) * 1000,
                "loop_s": took,
                "bar_updates": seen,
            }
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
    ref, proxy = results["python3"], results["backendai-python"]
    where = "cluster" if args.cluster else "local endpoint"
    target = 150 if args.cluster else 50
    print(f"proxy via {where}; reference: a local python3 ipykernel reached directly")
    for key in ref:
        print(f"{key:14} reference {ref[key]:10.2f}   proxy {proxy[key]:10.2f}")
    rt_ratio = proxy["rt_median_ms"] / ref["rt_median_ms"]
    print(
        f"comm round trip: median {proxy['rt_median_ms']:.1f} ms, "
        f"p90 {proxy['rt_p90_ms']:.1f} ms (target <= {target} ms); "
        f"median ratio to reference {rt_ratio:.1f}; an empty cell through the proxy: "
        f"{proxy['pass_cell_ms']:.1f} ms"
    )
    print(
        f"{args.updates} widget updates: proxy/reference wall time "
        f"{proxy['loop_s'] / ref['loop_s']:.2f} (target <= 1.5); bar at "
        f"{args.updates}/{args.updates} in both; bar updates seen "
        f"{proxy['bar_updates']:.0f} (proxy) vs {ref['bar_updates']:.0f} (reference)"
    )


if __name__ == "__main__":
    main()
