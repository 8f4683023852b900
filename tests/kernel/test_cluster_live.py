"""Live output on the real clusters (issue 18): Backend.AI 26.9.6 and 24.03 LTS, whichever run.

Cells run over REST (they survive a manager restart) and the rich channel's pump
(``richchannel/remote/live.py``) makes each answer come back as soon as output is pending, so
output arrives as it happens. Loose bounds here (<= 1 s); ``bench/live_bench.py`` measures the
targets (first output <= 0.3 s, a 0.2 s loop's p95 lag <= 0.3 s). The restart test restarts the
cluster's manager once (12-50 s).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from .conftest import kernel_env

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_DIR = Path(os.environ.get("BAI_CLUSTER_DIR") or next(
    (p / "shared" / "backendai-cluster" for p in ROOT.parents if (p / "shared").is_dir()),
    ROOT.parent / "shared" / "backendai-cluster",
))
CLUSTERS = {
    "26.9.6": Path("/tmp/backendai-cluster/user.env"),
    "24.3.11": Path("/tmp/backendai-cluster-24.3/user.env"),
}
KEYS = ("BACKEND_ENDPOINT", "BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY", "BACKEND_DOMAIN",
        "BACKEND_GROUP", "BACKEND_ENDPOINT_TYPE")
LOOP = ("import time\nfor i in range({n}):\n    print('L', i, time.time(), flush=True)\n"
        "    time.sleep(0.2)")


def env_of(path: Path) -> dict[str, str | None]:
    env = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    values: dict[str, str | None] = {k: env.get(k) for k in KEYS}
    values["BACKEND_IMAGE"] = env.get("BAI_IMAGE")
    values["BACKEND_EXECUTE_TRANSPORT"] = None  # the default: REST on a cluster
    values["BACKEND_OUTAGE_LIMIT"] = "150"
    return values


@pytest.fixture(scope="module", params=sorted(CLUSTERS))
def cluster(request: pytest.FixtureRequest) -> Iterator[tuple[str, KernelManager, BlockingKernelClient]]:
    version: str = request.param
    if not CLUSTERS[version].exists():
        pytest.skip(f"no Backend.AI {version} test cluster")
    target = os.environ.get("BAI_CLUSTER_ENV")
    if target and Path(target) != CLUSTERS[version]:
        # scripts/test.sh runs the tier once per server, the other one stopped meanwhile.
        pytest.skip(f"this pass tests the cluster of {target} (BAI_CLUSTER_ENV), not {version}")
    with kernel_env(env_of(CLUSTERS[version])):
        km, kc = start_new_kernel(kernel_name="backendai-python")
    try:
        kc.execute_interactive("import time", timeout=240)
        yield version, km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def run(kc: BlockingKernelClient, code: str, **kw: Any) -> tuple[dict[str, Any], list[tuple[float, float, dict[str, Any]]]]:
    """(reply content, [(seconds since the request, wall clock, message)])."""
    seen: list[tuple[float, float, dict[str, Any]]] = []
    t0 = time.monotonic()

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] not in ("status", "execute_input"):
            seen.append((time.monotonic() - t0, time.time(), msg))

    reply = kc.execute_interactive(code, timeout=240, output_hook=hook, **kw)
    return reply["content"], seen


def loop_lines(seen: list[tuple[float, float, dict[str, Any]]]) -> list[tuple[int, float]]:
    """(line number, lag) of every loop line; the cluster runs here, so clocks agree."""
    out = []
    for _, wall, msg in seen:
        if msg["msg_type"] == "stream":
            for line in msg["content"]["text"].splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[0] == "L":
                    out.append((int(parts[1]), wall - float(parts[2])))
    return out


def test_first_output_and_lag(cluster: Any) -> None:
    _, _, kc = cluster
    reply, seen = run(kc, "print('first', flush=True)\ntime.sleep(3)")
    streams = [(at, m["content"]["text"]) for at, _, m in seen if m["msg_type"] == "stream"]
    assert reply["status"] == "ok" and "first" in streams[0][1]
    assert streams[0][0] <= 1.0, streams
    reply, seen = run(kc, LOOP.format(n=20))
    lines = loop_lines(seen)
    assert [i for i, _ in lines] == list(range(20))
    lags = sorted(lag for _, lag in lines)
    assert lags[int(0.95 * len(lags))] <= 1.0, lags


def test_tqdm_bar_moves(cluster: Any) -> None:
    _, _, kc = cluster
    code = "from tqdm.auto import tqdm\nfor _ in tqdm(range(20)):\n    time.sleep(0.15)"
    reply, seen = run(kc, code)
    assert reply["status"] == "ok"
    updates = [at for at, _, m in seen if m["msg_type"] == "comm_msg"]
    # A widget bar: its updates arrive while the 3 s loop runs, not in one lump at the end.
    assert len(updates) >= 5, [m["msg_type"] for _, _, m in seen]
    assert len({round(at) for at in updates}) >= 3, updates


def test_manager_restart_during_live_loop(cluster: Any) -> None:
    version, _, kc = cluster
    run(kc, "kept = 42")

    def restart() -> None:
        subprocess.run([str(CLUSTER_DIR / "cluster.sh"), "restart", "manager"],
                       env={**os.environ, "BAI_VERSION": version}, check=True,
                       capture_output=True, timeout=240)

    timer = threading.Timer(2.0, restart)
    timer.start()
    try:
        reply, seen = run(kc, LOOP.format(n=60))
    finally:
        timer.join()
    assert reply["status"] == "ok"
    assert [i for i, _ in loop_lines(seen)] == list(range(60))  # every line once, in order
    reply, seen = run(kc, "print(kept)")
    assert reply["status"] == "ok"
    assert "42" in "".join(m["content"].get("text", "") for _, _, m in seen)


THREAD = (
    "import threading, time\n"
    "def worker():\n"
    "    for i in range(5):\n"
    "        time.sleep(0.4)\n"
    "        print('bg', i, time.time(), flush=True)\n"
    "threading.Thread(target=worker).start()\n"
)


def test_thread_output_while_idle(cluster: Any) -> None:
    """A thread's 5 lines printed after its cell ended arrive while the kernel is idle, under
    that cell, each within 1 s (here: through the collector run over REST)."""
    _, _, kc = cluster
    msg_id = kc.execute(THREAD)
    idle, lines = False, []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except Exception:  # queue.Empty
            continue
        parent = msg["parent_header"].get("msg_id")
        if msg["msg_type"] == "status" and parent == msg_id and not idle:
            idle = msg["content"]["execution_state"] == "idle"
            if idle:
                deadline = time.monotonic() + 4.0
        elif msg["msg_type"] == "stream" and idle:
            for line in msg["content"]["text"].splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[0] == "bg":
                    lines.append((parent, time.time() - float(parts[2]), parts[1]))
    kc.get_shell_msg(timeout=10)
    assert [n for _, _, n in lines] == ["0", "1", "2", "3", "4"], lines
    assert {p for p, _, _ in lines} == {msg_id}
    assert max(lag for _, lag, _ in lines) <= 1.0, lines
    reply, seen = run(kc, "print('next')")
    assert reply["status"] == "ok"
