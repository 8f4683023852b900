"""``%backendai nbrun``: the notebook-jobs core from a notebook, on the workspace's endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.error import UsageError

from backendai_jupyter.jobs.results import JobResult
from backendai_jupyter.magics import CommandError

pytestmark = pytest.mark.timeout(240)


def make_notebook(path: Path, *cells: str, parameters: str | None = None) -> None:
    nb = nbformat.v4.new_notebook()
    if parameters is not None:
        nb.cells.append(nbformat.v4.new_code_cell(parameters))
        nb.cells[0].metadata["tags"] = ["parameters"]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def test_nbrun_returns_the_sweep_result(bai: Any, workdir: Path) -> None:
    make_notebook(workdir / "train.ipynb", "loss = lr * 2\nrecord('loss', loss)",
                  parameters="lr = 0.1")
    result = bai("nbrun train.ipynb --param-range lr=case:1,3 --max-parallel 2 -o runs -q")
    assert isinstance(result, JobResult) and result.ok
    assert [(c.case.swept, c.records) for c in result.cases] == [
        ({"lr": 1}, {"loss": 2}), ({"lr": 3}, {"loss": 6})]
    assert "<table>" in result._repr_html_()
    summary = json.loads((workdir / "runs" / "summary.json").read_text())
    assert [c["status"] for c in summary["cases"]] == ["ok", "ok"]


def test_nbrun_failing_cell_is_in_the_result(bai: Any, workdir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    make_notebook(workdir / "bad.ipynb", "raise KeyError('nope')")
    result = bai("nbrun bad.ipynb -q")
    assert [c.status for c in result.cases] == ["failed"]
    assert "KeyError: 'nope'" in (result.cases[0].error or "")
    assert "raise KeyError('nope')" in capsys.readouterr().err
    assert (workdir / "bad-output.ipynb").is_file()


@pytest.mark.parametrize(("line", "error", "message"), [
    ("nbrun missing.ipynb", CommandError, "no such notebook: missing.ipynb"),
    ("nbrun nb.ipynb -p zz 1", UsageError, "unknown parameter 'zz'"),
    ("nbrun nb.ipynb --param-range lr=range:a", UsageError, "range: arguments must be integers"),
    ("nbrun nb.ipynb -m no-such-folder", CommandError, "no such storage folder"),
])
def test_nbrun_bad_input(bai: Any, workdir: Path, line: str, error: type[Exception],
                         message: str) -> None:
    make_notebook(workdir / "nb.ipynb", "print(lr)", parameters="lr = 0.1")
    with pytest.raises(error, match=message) as err:
        bai(line)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in workdir.iterdir()) == ["nb.ipynb"]


def test_nbrun_ctrl_c_destroys_the_sessions(bai: Any, magics: Any, workdir: Path) -> None:
    import _thread
    import threading
    import time

    from .conftest import live_sessions

    make_notebook(workdir / "slow.ipynb", "import time\ntime.sleep(30)", parameters="n = 0")

    def interrupt_when_running() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if any(s.startswith("bjob-") for s in live_sessions(magics)):
                time.sleep(1.0)  # let the cell start
                _thread.interrupt_main()  # a real KeyboardInterrupt in the magic's thread
                return
            time.sleep(0.2)

    timer = threading.Thread(target=interrupt_when_running)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            bai("nbrun slow.ipynb --param-range n=range:3 --max-parallel 1 -o runs -q")
    finally:
        timer.join()
    summary = json.loads((workdir / "runs" / "summary.json").read_text())
    assert summary["cancelled"] is True
    assert [c["status"] for c in summary["cases"]] == ["cancelled"] * 3
    assert [c["error"] for c in summary["cases"]][1:] == ["not started"] * 2
    assert not [s for s in live_sessions(magics) if s.startswith("bjob-")]
