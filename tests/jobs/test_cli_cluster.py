"""Notebook jobs against the real Backend.AI 26.9.6 cluster: an attached sweep and a detached
batch job (its runner has ipykernel but no nbformat/nbclient/papermill: nothing is installed)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from backendai_jupyter.jobs import RECORD_MIME

from .conftest import Endpoint, make_notebook, read_summary

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(400)]

CELLS = ("import sys\nloss = lr * bs\nprint('loss', loss, sys.version_info[:2])",
         "record('loss', loss)", "assert bs < 64, 'too big'")


def test_attached_sweep_on_the_cluster(cluster_endpoint: Endpoint, tmp_path: Path) -> None:
    make_notebook(tmp_path / "train.ipynb", *CELLS, parameters="lr = 0.1\nbs = 4")
    done = cluster_endpoint.run("run", "train.ipynb", "--param-range", "bs=case:32,64",
                                "-p", "lr", "0.5", "-r", "cpu=1", "-r", "mem=512m",
                                "--max-parallel", "2", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr  # bs=64 fails on purpose
    assert "AssertionError: too big" in done.stderr
    cases = read_summary(tmp_path / "runs")
    assert [c["status"] for c in cases] == ["ok", "failed"]
    assert [c["records"] for c in cases] == [{"loss": 16.0}, {"loss": 32.0}]
    out = nbformat.read(tmp_path / cases[0]["output"], as_version=4)
    assert out.metadata["papermill"]["parameters"] == {"lr": 0.5, "bs": 32}
    texts = [o.get("text", "") for c in out.cells for o in c.get("outputs", [])]
    # It ran on the cluster's image (26.9.6: python:3.13-…, 24.03: python:3.12-…).
    major, minor = cluster_endpoint.env["BACKEND_IMAGE"].rsplit(":", 1)[1].split("-")[0].split(".")
    assert any(t.startswith(f"loss 16.0 ({major}, {minor})") for t in texts), texts
    assert cluster_endpoint.sessions() == []


def test_detached_job_on_the_cluster(cluster_endpoint: Endpoint, tmp_path: Path) -> None:
    # No image named: the job's sessions run the cluster's newest Python image (client.images).
    auto = Endpoint({k: v for k, v in cluster_endpoint.env.items() if k != "BACKEND_IMAGE"},
                    cluster_endpoint.jobs_dir)
    make_notebook(tmp_path / "train.ipynb", *CELLS, parameters="lr = 0.1\nbs = 4")
    done = auto.run("run", "train.ipynb", "--param-range", "bs=case:32,64",
                                "-p", "lr", "0.5", "--detach", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (path,) = cluster_endpoint.jobs_dir.glob("*.json")
    job = json.loads(path.read_text())["job_id"]
    waited = cluster_endpoint.run("jobs", "wait", job, "--timeout", "240", cwd=tmp_path,
                                  timeout=300)
    assert waited.returncode == 1, waited.stdout + waited.stderr
    fetched = cluster_endpoint.run("jobs", "fetch", job, "-o", "fetched", cwd=tmp_path)
    assert fetched.returncode == 1 and "summary:" in fetched.stdout, fetched.stderr
    cases = read_summary(tmp_path / "fetched")
    assert [c["status"] for c in cases] == ["ok", "failed"]
    assert [c["records"] for c in cases] == [{"loss": 16.0}, {"loss": 32.0}]
    assert "AssertionError: too big" in cases[1]["error"]
    for c in cases:
        out = nbformat.read(tmp_path / c["output"], as_version=4)
        assert out.metadata["papermill"]["parameters"]["bs"] == c["swept"]["bs"]
        recorded = [o["data"][RECORD_MIME] for cell in out.cells for o in cell.get("outputs", [])
                    if RECORD_MIME in o.get("data", {})]
        assert recorded == [{"name": "loss", "value": 0.5 * c["swept"]["bs"]}]
    assert cluster_endpoint.sessions() == []
    cluster_endpoint.delete_files("backendai-jobs", job)  # a long-lived cluster stays tidy
