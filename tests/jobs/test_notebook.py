"""Preparing a job's notebook (papermill's conventions + the record helper), reading results
back, and the in-session executor on a real local ipykernel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

from backendai_jupyter.client._exceptions import ConfigError, ParseError
from backendai_jupyter.jobs import RECORD_MIME, _executor
from backendai_jupyter.jobs.notebook import first_failure, load_notebook, prepare
from backendai_jupyter.jobs.params import Case
from backendai_jupyter.jobs.record import HELPER_TAG, helper_source, read_records
from backendai_jupyter.jobs.results import CaseResult, JobResult
from backendai_jupyter.jobs.spec import build_spec

from .conftest import make_notebook


def tags(cell: Any) -> list[str]:
    return list(cell.metadata.get("tags", []))


def test_parameters_are_injected_after_the_parameters_cell(tmp_path: Path) -> None:
    path = make_notebook(tmp_path / "nb.ipynb", "print(lr)", parameters="lr = 0.1\nbs = 8")
    nb = load_notebook(path)
    assert nb.parameters == ["lr", "bs"] and nb.check(["lr"]) == []
    out = prepare(nb, {"lr": 0.5, "name": "x y"})
    assert [tags(c) for c in out.cells] == [[HELPER_TAG], ["parameters"],
                                            ["injected-parameters"], []]
    injected = out.cells[2].source
    assert "lr = 0.5" in injected and "name = \"x y\"" in injected
    assert out.cells[0].source == helper_source()
    assert out.metadata["papermill"]["parameters"] == {"lr": 0.5, "name": "x y"}
    assert load_notebook(path).node == nb.node  # the input is left as it was


def test_without_a_parameters_cell_they_go_on_top_with_a_warning(tmp_path: Path) -> None:
    nb = load_notebook(make_notebook(tmp_path / "plain.ipynb", "print(1)"))
    (warning,) = nb.check(["lr"])
    assert "no cell tagged 'parameters'" in warning
    out = prepare(nb, {"lr": 1})
    assert [tags(c) for c in out.cells] == [[HELPER_TAG], ["injected-parameters"], []]


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    path = make_notebook(tmp_path / "nb.ipynb", "x = 1", parameters="lr = 0.1")
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"notebook": tmp_path / "missing.ipynb"}, ConfigError, "no such notebook"),
        ({"params": [("epochs", "3")]}, ParseError, "unknown parameter 'epochs'.*defines lr"),
        ({"param_ranges": ["lr=linspace:1"]}, ParseError, "linspace: takes"),
        ({"resources": ["cpu=lots"]}, ParseError, "cpu must be a positive number"),
        ({"mounts": ["a:"]}, ParseError, "mount path after the folder name is empty"),
        ({"max_parallel": 0}, ParseError, "--max-parallel must be at least 1"),
        ({"resource_ranges": ["cuda.shares=case:0.5,-1"]}, ParseError, "positive number"),
        ({"resource_ranges": ["case:1"]}, ParseError, "expected SLOT=EXPR"),
        ({"resource_ranges": ["cpu=case:1", "cpu=case:2"]}, ParseError, "more than once"),
        ({"resource_ranges": ["shmem=case:1g"]}, ParseError, "not a resource slot"),
        ({"params_file": str(tmp_path / "none.yaml")}, ConfigError, "no such parameters file"),
    ]
    (tmp_path / "text.ipynb").write_text("not json")
    cases.append(({"notebook": tmp_path / "text.ipynb"}, ConfigError, "is not a Jupyter notebook"))
    for kwargs, error, message in cases:
        kwargs.setdefault("notebook", path)
        with pytest.raises(error, match=message) as err:
            build_spec(**kwargs)
        assert "\n" not in str(err.value), kwargs


def test_spec_from_a_params_file_and_ranges(tmp_path: Path) -> None:
    path = make_notebook(tmp_path / "nb.ipynb", "x = 1", parameters="lr = 0.1\nbs = 1\nopt = 'a'")
    (tmp_path / "p.yaml").write_text("opt: sgd\nbs: 4\n")
    spec = build_spec(path, params_file=str(tmp_path / "p.yaml"), params=[("bs", "8")],
                      param_ranges=["lr=case:0.1,0.2"], resources=["cpu=1", "mem=1G"],
                      mounts=["data", "models:/mnt/m"], output=tmp_path / "runs")
    assert [c.params for c in spec.cases] == [{"opt": "sgd", "bs": 8, "lr": 0.1},
                                              {"opt": "sgd", "bs": 8, "lr": 0.2}]
    assert spec.resources_text == "cpu=1,mem=1g" and spec.mounts_text == "data,models:/mnt/m"
    assert spec.mounts == ("data", "models") and spec.mount_map == {"models": "/mnt/m"}
    assert spec.sweep and spec.output_path(spec.cases[1]) == tmp_path / "runs/nb-001-lr-0.2.ipynb"
    assert spec.session_name(spec.cases[1]).endswith("-001")


def test_first_failure_and_records_read_from_outputs() -> None:
    cells = [
        {"source": "ok", "outputs": [
            {"output_type": "display_data", "data": {RECORD_MIME: {"name": "a", "value": 1}}}]},
        {"source": ["1/", "0"], "outputs": [
            {"output_type": "display_data", "data": {RECORD_MIME: {"name": "a", "value": 2}}},
            {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
             "traceback": ["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"]}]},
    ]
    assert read_records(cells) == {"a": 2}
    failure = first_failure(cells)
    assert failure is not None and failure.index == 1 and failure.source == "1/0"
    assert failure.line == "cell 1: ZeroDivisionError: division by zero"
    assert "\x1b" not in failure.report() and "1/0" in failure.report()
    assert first_failure(cells[:1]) is None


def test_summary_as_text_csv_and_json(tmp_path: Path) -> None:
    a = Case(0, {"lr": 0.1}, {"lr": 0.1, "bs": 2})
    b = Case(1, {"lr": 0.2}, {"lr": 0.2, "bs": 2})
    result = JobResult("j1", (
        CaseResult(a, "ok", 1.23456, "out/a.ipynb", {"loss": 0.5}),
        CaseResult(b, "failed", 2.0, "out/b.ipynb", {}, "cell 3: ValueError: x"),
    ))
    assert not result.ok
    assert result.to_csv().splitlines() == [
        "case,lr,status,duration_s,output,loss,error",
        "000-lr-0.1,0.1,ok,1.235,out/a.ipynb,0.5,",
        "001-lr-0.2,0.2,failed,2,out/b.ipynb,,cell 3: ValueError: x",
    ]
    data = json.loads(result.to_json())
    assert data["cases"][0]["records"] == {"loss": 0.5}
    assert data["cases"][1]["params"] == {"lr": 0.2, "bs": 2}
    assert "001-lr-0.2" in result.to_text() and "<td>cell 3" in result._repr_html_()
    csv_path, json_path = result.write_summary(tmp_path / "s")
    assert csv_path.read_text() == result.to_csv() and json.loads(json_path.read_text()) == data


MSG = dict[str, Any]


def msg(kind: str, **content: Any) -> MSG:
    return {"msg_type": kind, "content": content}


@pytest.mark.parametrize(("messages", "outputs"), [
    ([msg("stream", name="stdout", text="a"), msg("stream", name="stdout", text="b"),
      msg("stream", name="stderr", text="c")],
     [{"output_type": "stream", "name": "stdout", "text": "ab"},
      {"output_type": "stream", "name": "stderr", "text": "c"}]),
    ([msg("stream", name="stdout", text="a"), msg("clear_output", wait=True),
      msg("stream", name="stdout", text="b")],
     [{"output_type": "stream", "name": "stdout", "text": "b"}]),
    ([msg("stream", name="stdout", text="a"), msg("clear_output", wait=False)], []),
    ([msg("display_data", data={"text/plain": "1"}, metadata={}, transient={"display_id": "d"}),
      msg("update_display_data", data={"text/plain": "2"}, metadata={},
          transient={"display_id": "d"})],
     [{"output_type": "display_data", "data": {"text/plain": "2"}, "metadata": {}}]),
    ([msg("execute_input", execution_count=4),
      msg("execute_result", data={"text/plain": "3"}, metadata={}, execution_count=4),
      msg("error", ename="E", evalue="v", traceback=["t"])],
     [{"output_type": "execute_result", "data": {"text/plain": "3"}, "metadata": {},
       "execution_count": 4},
      {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["t"]}]),
])
def test_executor_maps_messages_to_outputs(messages: list[MSG], outputs: list[MSG]) -> None:
    sink = _executor.CellOutputs({})
    for m in messages:
        sink.feed(m)
    assert sink.outputs == outputs


def test_executor_runs_a_prepared_notebook_on_a_local_ipykernel(tmp_path: Path) -> None:
    """What a batch session's startup command does, here on this machine's ipykernel."""
    path = make_notebook(
        tmp_path / "nb.ipynb",
        "import numpy as np\nrecord('mean', np.float64(lr) * 2)\nrecord('obj', object)",
        "h = display('first', display_id=True)\nh.update('second')\nprint('out')",
        "raise ValueError(f'bad {lr}')",
        "print('never')",
        parameters="lr = 0.1",
    )
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    nbformat.write(prepare(load_notebook(path), {"lr": 0.25}), case_dir / "input.ipynb")
    assert _executor.execute(str(case_dir)) == 1
    result = json.loads((case_dir / "result.json").read_text())
    assert result["status"] == "failed"
    assert result["error"] == "cell 5: ValueError: bad 0.25"
    assert result["records"] == {"mean": 0.5, "obj": "<class 'object'>"}
    assert result["duration"] > 0
    out = nbformat.read(case_dir / "output.ipynb", as_version=4)
    nbformat.validate(out)
    display = out.cells[4].outputs
    assert display[0]["data"]["text/plain"] == "'second'" and display[1]["text"] == "out\n"
    assert out.cells[5].outputs[0]["ename"] == "ValueError"
    assert out.cells[6].outputs == [] and out.cells[6].execution_count is None
    assert json.loads((case_dir / "status.json").read_text())["state"] == "done"


@pytest.mark.parametrize(("env", "mounts", "resources", "expected"), [
    ({}, [], [], {}),
    ({"BACKEND_VFOLDER_MOUNTS": "data,logs:/mnt/l"}, ["logs", "m:/x"], ["cpu=2"],
     {"BACKEND_VFOLDER_MOUNTS": "data,logs,m:/x", "BACKEND_RESOURCES": "cpu=2"}),
    ({"BACKEND_RESOURCES": "cpu=3"}, [], [], {"BACKEND_RESOURCES": "cpu=3"}),
])
def test_kernel_environ_carries_the_case_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], mounts: list[str],
    resources: list[str], expected: dict[str, str],
) -> None:
    from backendai_jupyter.jobs.attached import kernel_environ

    for key in ("BACKEND_VFOLDER_MOUNTS", "BACKEND_RESOURCES", "BACKEND_SECRET_KEY"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = make_notebook(tmp_path / "nb.ipynb", "x = 1")
    spec = build_spec(path, mounts=mounts, resources=resources, image="img")
    got = kernel_environ(spec, spec.cases[0], "/state")
    assert got["BACKEND_SESSION_NAME"] == spec.session_name(spec.cases[0])
    assert got["BACKEND_IMAGE"] == "img" and got["BACKENDAI_JUPYTER_STATE_DIR"] == "/state"
    for key in ("BACKEND_VFOLDER_MOUNTS", "BACKEND_RESOURCES"):
        assert got.get(key) == expected.get(key)
    assert "BACKEND_SECRET_KEY" not in got  # only what this process already has


def test_summary_names_the_gpu_each_case_got() -> None:
    a = Case(0, {"shares": 0.5}, {"shares": 0.5})
    b = Case(1, {"shares": 1}, {"shares": 1})
    result = JobResult("j2", (
        CaseResult(a, "ok", 1.0, "a.ipynb", gpu="cuda.shares 0.5"),
        CaseResult(b, "ok", 1.0, "b.ipynb", gpu="cuda.shares 1"),
    ))
    assert result.to_csv().splitlines() == [
        "case,shares,status,duration_s,gpu,output,error",
        "000-shares-0.5,0.5,ok,1,cuda.shares 0.5,a.ipynb,",
        "001-shares-1,1,ok,1,cuda.shares 1,b.ipynb,",
    ]


def test_a_sweep_over_gpu_shares(tmp_path: Path) -> None:
    path = make_notebook(tmp_path / "nb.ipynb", "x = 1", parameters="lr = 0.1")
    spec = build_spec(path, resources=["cpu=1", "mem=1g"], param_ranges=["lr=case:1,2"],
                      resource_ranges=["cuda.shares=case:0.5,1.0"], max_parallel=None)
    assert [(c.params, c.resources) for c in spec.cases] == [
        ({"lr": 1}, {"cuda.shares": "0.5"}), ({"lr": 1}, {"cuda.shares": "1"}),
        ({"lr": 2}, {"cuda.shares": "0.5"}), ({"lr": 2}, {"cuda.shares": "1"}),
    ]
    assert spec.cases[1].label == "001-lr-1_cuda.shares-1"
    assert spec.case_resources_text(spec.cases[1]) == "cpu=1,mem=1g,cuda.shares=1"
    assert spec.max_parallel is None  # decided from the free GPU capacity when it runs
