"""``backendai-jupyter run`` / ``jobs`` in a subprocess against a private local endpoint:
attached runs, a failing cell, a sweep, Ctrl-C, bad input, detached batch jobs."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import nbformat
import pytest

from backendai_jupyter.jobs import RECORD_MIME

from .conftest import Endpoint, make_notebook, read_summary

pytestmark = pytest.mark.timeout(300)

TRAIN = ("import time\nloss = lr * bs\nprint('loss', loss)", "record('loss', loss)\nrecord('bs', bs)")


def test_run_writes_the_executed_notebook_with_parameters_and_records(
    local_endpoint: Endpoint, tmp_path: Path
) -> None:
    nb = make_notebook(tmp_path / "train.ipynb", *TRAIN, parameters="lr = 0.1\nbs = 4")
    before = nb.read_bytes()
    done = local_endpoint.run("run", "train.ipynb", "-p", "lr", "0.5", "-r", "cpu=1",
                              "-o", "out.ipynb", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    injected = next(c for c in out.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "lr = 0.5" in injected.source
    assert out.metadata["papermill"]["parameters"] == {"lr": 0.5}
    streams = [o for c in out.cells for o in c.get("outputs", []) if o.output_type == "stream"]
    assert any("loss 2.0" in o.text for o in streams)
    recorded = [o.data[RECORD_MIME] for c in out.cells for o in c.get("outputs", [])
                if RECORD_MIME in o.get("data", {})]
    assert recorded == [{"name": "loss", "value": 2.0}, {"name": "bs", "value": 4}]
    assert "loss" in done.stdout and "2" in done.stdout  # the summary table
    assert nb.read_bytes() == before  # the input notebook is left alone
    assert local_endpoint.sessions() == []


def test_mounted_folders_with_a_path(local_endpoint: Endpoint, tmp_path: Path) -> None:
    local_endpoint.create_folder("jobs-data")
    make_notebook(tmp_path / "m.ipynb", "import os\nrecord('mounted', os.path.isdir('mnt/d'))")
    done = local_endpoint.run("run", "m.ipynb", "-m", "jobs-data:mnt/d", "-o", "m-out.ipynb",
                              cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "mounted" in done.stdout and "True" in done.stdout
    assert local_endpoint.sessions() == []


def test_a_failing_cell_exits_1_prints_it_and_still_writes_the_output(
    local_endpoint: Endpoint, tmp_path: Path
) -> None:
    make_notebook(tmp_path / "bad.ipynb", "print('before')", "x = 1\n1 / 0", "print('after')")
    done = local_endpoint.run("run", "bad.ipynb", cwd=tmp_path)
    assert done.returncode == 1
    assert "ZeroDivisionError: division by zero" in done.stderr
    assert "1 / 0" in done.stderr  # the failing cell's source
    out = nbformat.read(tmp_path / "bad-output.ipynb", as_version=4)
    # helper, the (empty) injected parameters as papermill always adds, then the notebook
    assert [c.source for c in out.cells[2:]] == ["print('before')", "x = 1\n1 / 0",
                                                 "print('after')"]
    assert out.cells[2].outputs[0].text == "before\n"
    assert out.cells[3].outputs[-1].output_type == "error"
    assert out.cells[4].outputs == []
    assert local_endpoint.sessions() == []


def test_a_six_case_sweep_two_at_a_time(local_endpoint: Endpoint, tmp_path: Path) -> None:
    make_notebook(tmp_path / "train.ipynb", *TRAIN, "assert bs < 64, 'too big'",
                  parameters="lr = 0.1\nbs = 4")
    done = local_endpoint.run(
        "run", "train.ipynb", "--param-range", "lr=linspace:0.1,0.3,3",
        "--param-range", "bs=case:32,64", "--max-parallel", "2", "-o", "runs", cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # the bs=64 cases fail on purpose
    cases = read_summary(tmp_path / "runs")
    assert [(c["swept"]["lr"], c["swept"]["bs"]) for c in cases] == [
        (0.1, 32), (0.1, 64), (0.2, 32), (0.2, 64), (0.3, 32), (0.3, 64)]
    assert [c["status"] for c in cases] == ["ok", "failed"] * 3
    assert [c["records"]["loss"] for c in cases] == pytest.approx(
        [3.2, 6.4, 6.4, 12.8, 9.6, 19.2])
    assert all("AssertionError: too big" in c["error"] for c in cases[1::2])
    # At most two sessions at a time: no case started before two others had finished.
    spans = sorted((c["submitted_at"], c["finished_at"]) for c in cases)
    for i, (start, _) in enumerate(spans):
        assert sum(1 for s, e in spans[:i] if e > start) <= 1
    for c in cases:
        assert (tmp_path / c["output"]).is_file()
    csv_lines = (tmp_path / "runs" / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("case,lr,bs,status,duration_s,output,loss,")
    assert len(csv_lines) == 7
    assert local_endpoint.sessions() == []


def test_ctrl_c_cancels_pending_cases_and_destroys_running_sessions(
    local_endpoint: Endpoint, tmp_path: Path
) -> None:
    make_notebook(tmp_path / "slow.ipynb", *(["import time\ntime.sleep(3)"] * 4),
                  parameters="n = 0")
    proc = local_endpoint.popen("run", "slow.ipynb", "--param-range", "n=range:5",
                                "--max-parallel", "2", "-o", "runs", cwd=tmp_path)
    deadline = time.monotonic() + 90
    while len([s for s in local_endpoint.sessions() if s["status"] == "RUNNING"]) < 2:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    cases = read_summary(tmp_path / "runs")
    assert [c["status"] for c in cases] == ["cancelled"] * 5
    assert [c["error"] for c in cases[2:]] == ["not started"] * 3
    assert json.loads((tmp_path / "runs" / "summary.json").read_text())["cancelled"] is True
    assert local_endpoint.sessions() == []


@pytest.mark.parametrize(("args", "message"), [
    (["missing.ipynb"], "no such notebook: missing.ipynb"),
    (["nb.ipynb", "-p", "epochs", "3"], "unknown parameter 'epochs'"),
    (["nb.ipynb", "--param-range", "lr=linspace:0,1"], "linspace: takes START,STOP,NUM"),
    (["nb.ipynb", "-m", "no-such-folder"], "no such storage folder: no-such-folder"),
    (["nb.ipynb", "--detach", "--folder", "no-such-folder"],
     "no such storage folder: no-such-folder"),
])
def test_bad_input_is_one_line_and_starts_nothing(
    local_endpoint: Endpoint, tmp_path: Path, args: list[str], message: str
) -> None:
    make_notebook(tmp_path / "nb.ipynb", "print(lr)", parameters="lr = 0.1")
    done = local_endpoint.run("run", *args, cwd=tmp_path)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if "embedded local endpoint" not in line]
    assert lines == [f"backendai-jupyter run: {message}"] or (
        len(lines) == 1 and message in lines[0]), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nb.ipynb"]
    assert local_endpoint.sessions() == []


def test_detached_jobs_run_as_batch_sessions_and_are_fetched(
    local_endpoint: Endpoint, tmp_path: Path
) -> None:
    make_notebook(tmp_path / "train.ipynb", *TRAIN, "assert bs < 64, 'too big'",
                  parameters="lr = 0.1\nbs = 4")
    done = local_endpoint.run("run", "train.ipynb", "--param-range", "bs=case:32,64",
                              "-p", "lr", "0.5", "--detach", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "submitted job j" in done.stdout
    (record,) = [json.loads(p.read_text()) for p in local_endpoint.jobs_dir.glob("*.json")
                 if json.loads(p.read_text())["notebook"].endswith("train.ipynb")]
    assert local_endpoint.env["BACKEND_SECRET_KEY"] not in json.dumps(record)
    job = record["job_id"]
    waited = local_endpoint.run("jobs", "wait", job, "--timeout", "120", cwd=tmp_path)
    assert waited.returncode == 1, waited.stdout + waited.stderr  # bs=64 fails on purpose
    assert "ok" in waited.stdout, waited.stdout
    assert "ok" in waited.stdout and "AssertionError: too big" in waited.stdout
    listed = local_endpoint.run("jobs", cwd=tmp_path)
    assert job in listed.stdout and "failed" in listed.stdout
    fetched = local_endpoint.run("jobs", "fetch", job[:12], "-o", "fetched", cwd=tmp_path)
    assert fetched.returncode == 1
    cases = read_summary(tmp_path / "fetched")
    assert [c["status"] for c in cases] == ["ok", "failed"]
    assert [c["records"] for c in cases] == [{"loss": 16.0, "bs": 32}, {"loss": 32.0, "bs": 64}]
    for c in cases:
        out = nbformat.read(tmp_path / c["output"], as_version=4)
        assert out.metadata["papermill"]["parameters"] == {"lr": 0.5, "bs": c["swept"]["bs"]}
        assert any(o.get("output_type") == "stream" and "loss" in o.get("text", "")
                   for cell in out.cells for o in cell.get("outputs", []))
    assert local_endpoint.sessions() == []


def test_jobs_cancel_destroys_the_batch_sessions(local_endpoint: Endpoint, tmp_path: Path) -> None:
    make_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(60)", parameters="n = 0")
    done = local_endpoint.run("run", "slow.ipynb", "--param-range", "n=case:1,2", "--detach",
                              cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 60
    while len(local_endpoint.sessions()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    cancelled = local_endpoint.run("jobs", "cancel", cwd=tmp_path)
    assert "destroyed 2 running session(s)" in cancelled.stdout, cancelled.stderr
    assert local_endpoint.sessions() == []
    waited = local_endpoint.run("jobs", "wait", "--timeout", "30", cwd=tmp_path)
    assert waited.returncode == 1 and waited.stdout.count("cancelled") >= 2
