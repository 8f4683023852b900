"""``%%backendai run`` on the real Backend.AI 26.9.6 cluster: the one execution path, rich channel
included, so a cell that prints and displays a DataFrame, HTML and markdown and then fails shows
every output in order and a structured error (on the stock runner the DataFrame alone made the
agent fail the whole call with a 500 and lost the line printed before it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.utils.capture import capture_output

from backendai_jupyter.magics import BackendAIMagics, RunFailed

from .cluster_magics import cluster_magics

CLUSTER_ENV = Path(os.environ.get("BAI_CLUSTER_ENV", "/tmp/backendai-cluster/user.env"))

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not CLUSTER_ENV.exists(), reason="no Backend.AI test cluster"),
]

CELL = """\
print('before')
import pandas as pd
from IPython.display import HTML, Markdown, Latex, display
display(pd.DataFrame({'a': [1, 2]}))
display(HTML('<b>bold</b>'))
display(Markdown('*md*'))
display(Latex(r'$\\alpha$'))
print('after')
raise ValueError('boom')
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[BackendAIMagics]:
    with cluster_magics(CLUSTER_ENV) as magics:
        yield magics


def test_rich_outputs_in_order_and_a_structured_error(cluster: BackendAIMagics) -> None:
    with capture_output() as shown:
        result: Any = cluster.backendai("run -r cpu=1 -r mem=1g --rm -q", CELL)
    kinds = [msg_type for msg_type, _ in result.outputs]
    assert kinds == ["stream", *["display_data"] * 4, "stream", "error"], result.outputs
    data = [content["data"] for msg_type, content in result.outputs if msg_type == "display_data"]
    assert "<table" in data[0]["text/html"]
    assert data[1]["text/html"] == "<b>bold</b>"
    assert data[2]["text/markdown"] == "*md*"
    assert data[3]["text/latex"] == "$\\alpha$"
    assert result.stdout == "before\nafter\n"
    assert result.exit_code == 1 and result.error["ename"] == "ValueError"
    assert result.error["evalue"] == "boom" and result.error["traceback"]
    # What the cell showed, through IPython's display machinery, in the same order.
    assert shown.stdout == "before\nafter\n"
    assert [o.data for o in shown.outputs] == data
    assert "ValueError" in shown.stderr and "boom" in shown.stderr


def test_raise_flag_carries_the_remote_exception(cluster: BackendAIMagics) -> None:
    with capture_output(), pytest.raises(RunFailed) as info:
        cluster.backendai("run -r cpu=1 -r mem=1g --rm -q --raise -c 'print(1); 1/0'")
    assert info.value.ename == "ZeroDivisionError"
    assert info.value.result.stdout == "1\n"


def test_doctor_on_the_cluster(cluster: BackendAIMagics) -> None:
    with capture_output() as captured:
        cluster.backendai("doctor")
    out = captured.stdout
    assert "✓ endpoint: " in out and "✓ keys: " in out and "✓ project: " in out
    assert out.rstrip().endswith("→ a first cell should run"), out
