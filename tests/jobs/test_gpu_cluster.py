"""A notebook sweep over GPU shares on the real 26.9.6 cluster (mock devices, BAI_MOCK_GPUS=2):
each case's session gets its own amount, the summary records it, and ``--max-parallel``
defaults to what the free GPU capacity holds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from backendai_jupyter.client import Client, ClientConfig
from backendai_jupyter.jobs.attached import run_attached
from backendai_jupyter.jobs.params import Case
from backendai_jupyter.jobs.results import CaseResult
from backendai_jupyter.jobs.spec import build_spec

from .conftest import Endpoint, make_notebook, read_summary

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(400)]

CELLS = ("import os\nrecord('gpu_config', os.environ.get('GPU_CONFIG'))",)


def test_sweep_over_gpu_shares(cluster_endpoint: Endpoint, tmp_path: Path) -> None:
    slots = cluster_endpoint.run("run", "--help", cwd=tmp_path)  # the flag exists
    assert "--resource-range" in slots.stdout
    make_notebook(tmp_path / "gpu.ipynb", *CELLS, parameters="x = 1")
    done = cluster_endpoint.run("run", "gpu.ipynb", "-r", "cpu=1", "-r", "mem=512m",
                                "--resource-range", "cuda.shares=case:0.5,1", "-o", "runs",
                                cwd=tmp_path)
    if "no cuda.shares slot" in done.stderr:
        pytest.skip("the cluster advertises no cuda.shares (start it with BAI_MOCK_GPUS=2)")
    assert done.returncode == 0, done.stdout + done.stderr
    cases = read_summary(tmp_path / "runs")
    assert [c["gpu"] for c in cases] == ["cuda.shares 0.5", "cuda.shares 1"]
    # 0.5 share of a 16 GiB mock device is 8 GiB of it; a whole share is all of device 0 or 1.
    configs = [c["records"]["gpu_config"] for c in cases]
    assert configs[0].endswith(":8g") and configs[1].endswith(":16g"), configs
    # Both fitted at once (2 shares free): they ran side by side, not one after the other.
    first, second = cases
    assert second["submitted_at"] < first["finished_at"], cases
    assert cluster_endpoint.sessions() == []


async def running(client: Client, name: str, timeout: float = 120) -> None:
    """Until ``name`` runs: a session created while the manager still counts the shares of one
    destroyed a moment ago comes back PENDING (26.9.6 frees them some seconds later)."""
    deadline = time.monotonic() + timeout
    while (await client.sessions.info(name)).status != "RUNNING":
        assert time.monotonic() < deadline, f"{name} did not start in {timeout:.0f} s"
        await asyncio.sleep(1)


class Recorder:
    """A progress that keeps what the runner said about waiting cases."""

    def __init__(self) -> None:
        self.waits: list[str] = []

    def case_started(self, case: Case, cells: int) -> None:
        pass

    def cell_done(self, case: Case, done: int) -> None:
        pass

    def case_done(self, result: CaseResult) -> None:
        pass

    def case_waiting(self, case: Case, why: str) -> None:
        self.waits.append(why)


async def test_a_queued_case_says_why_it_waits(
    cluster_endpoint: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in cluster_endpoint.environ().items():
        monkeypatch.setenv(key, value)
    nb = make_notebook(tmp_path / "wait.ipynb", "record('ok', 1)", parameters="x = 1")
    spec = build_spec(nb, resources=["cpu=1", "mem=512m", "cuda.shares=1"], output=tmp_path / "o")
    recorder = Recorder()
    async with Client(ClientConfig.from_env(cluster_endpoint.env)) as client:
        slots = await client.resources.resource_slots()
        if "cuda.shares" not in slots:
            pytest.skip("the cluster advertises no cuda.shares (start it with BAI_MOCK_GPUS=2)")
        holder = await client.sessions.create(
            cluster_endpoint.env["BACKEND_IMAGE"], name="gtest-job-holder",
            resources={"cpu": "1", "mem": "512m", "cuda.shares": "2"})
        await running(client, holder.id)
        job = asyncio.ensure_future(run_attached(spec, client, recorder))
        try:
            for _ in range(60):
                if recorder.waits:
                    break
                await asyncio.sleep(0.5)
            assert recorder.waits and recorder.waits[0].startswith(
                "waiting for 1 cuda.shares: 0 free"), recorder.waits
        finally:
            await client.sessions.destroy(holder.id, forced=True)
        result = await asyncio.wait_for(job, 200)
    assert [c.status for c in result.cases] == ["ok"], [(c.status, c.error) for c in result.cases]
    assert result.cases[0].gpu == "cuda.shares 1"
    assert recorder.waits[-1] == ""  # the wait ended: the reason is cleared
