"""``%backendai run`` asking the real 26.9.6 cluster for GPUs (mock devices, BAI_MOCK_GPUS=2):
an impossible request fails at once naming the slot; a run waiting for busy shares says why
in its status lines; ``ps`` shows the GPU slots a session occupies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from backendai_jupyter.client import Client, NotFoundError
from backendai_jupyter.magics import BackendAIMagics
from backendai_jupyter.magics.errors import CommandError

from .cluster_magics import cluster_magics

CLUSTER_ENV = Path(os.environ.get("BAI_CLUSTER_ENV", "/tmp/backendai-cluster/user.env"))

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CLUSTER_ENV.exists(), reason="no Backend.AI test cluster"),
]


async def running(client: Client, name: str, timeout: float = 120) -> None:
    """Until ``name`` runs: a session created while the manager still counts the shares of one
    destroyed a moment ago comes back PENDING (26.9.6 frees them some seconds later)."""
    deadline = time.monotonic() + timeout
    while (await client.sessions.info(name)).status != "RUNNING":
        assert time.monotonic() < deadline, f"{name} did not start in {timeout:.0f} s"
        await asyncio.sleep(1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[BackendAIMagics]:
    with cluster_magics(CLUSTER_ENV, needs_slot="cuda.shares") as magics:
        yield magics


def test_impossible_run_fails_at_once(cluster: BackendAIMagics) -> None:
    with pytest.raises((CommandError, UsageError), match=r"cuda.shares=3 can never run.*has 2"):
        cluster.backendai("run -r cpu=1 -r mem=1g -r cuda.shares=3 --rm -c 'print(1)'")


def test_waiting_run_says_why_and_ps_shows_gpu_slots(cluster: BackendAIMagics) -> None:
    holder = "gtest-magic-holder"
    ws, client = cluster.workspace, cluster.client

    def free() -> None:
        ws.run(client.sessions.destroy(holder, forced=True))

    with capture_output():
        cluster.backendai(f"start -r cpu=1 -r mem=1g -r cuda.shares=2 -t {holder}")
    ws.run(running(client, holder))
    with capture_output():
        table: Any = cluster.backendai("ps")
    freed = threading.Timer(10.0, free)
    try:
        row = next(r for r in table if r["name"] == holder)
        assert row["gpu"] == "cuda.shares 2", row
        freed.start()
        with capture_output() as shown:
            result: Any = cluster.backendai(
                "run -r cpu=1 -r mem=1g -r cuda.shares=1 --rm -c 'print(42)'")
    finally:
        freed.cancel()
        with contextlib.suppress(NotFoundError):
            free()
    assert result.exit_code == 0 and result.stdout == "42\n", result
    assert result.gpu == "cuda.shares 1"
    assert "waiting for 1 cuda.shares: 0 free" in shown.stderr, shown.stderr


def test_gpu_sweep_table_names_each_cases_gpu(cluster: BackendAIMagics) -> None:
    with capture_output():
        sweep: Any = cluster.backendai(
            "run -r cpu=1 -r mem=512m -r cuda.shares=0.5 -e CASE=$X --env-range X=case:1,2 -q "
            "-c 'import os; print(os.environ[\"CASE\"], os.environ.get(\"GPU_CONFIG\"))'")
    assert sweep.ok, sweep
    assert sweep.table.column("gpu") == ["cuda.shares 0.5", "cuda.shares 0.5"]
    assert [c.stdout.split()[1].endswith(":8g") for c in sweep.cases] == [True, True]
