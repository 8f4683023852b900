"""A notebook sweep over GPU shares on the real 26.9.6 cluster (mock devices, BAI_MOCK_GPUS=2):
each case's session gets its own amount, the summary records it, and ``--max-parallel``
defaults to what the free GPU capacity holds."""

from __future__ import annotations

from pathlib import Path

import pytest

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
