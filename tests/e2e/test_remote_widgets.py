"""Widgets made by remote code, in JupyterLab 4 in headless Chromium, on the local endpoint.

In the "Backend.AI Python (remote GPU)" kernel: drag a remote slider and see its remote
``observe`` callback update a label; ``interact`` re-renders its output; a ``tqdm.auto`` bar
reaches 100 %; after a page reload the widgets still render with their live state (the page asks
the remote kernel for it). Screenshots: ``artifacts/e2e/1*-remote-*.png``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from test_jupyterlab import (
    cell,
    open_notebook,
    run_cell,
    set_readout,
    shot,
    wait_text,
    write_notebook,
)

pytestmark = pytest.mark.e2e

KERNEL = "Backend.AI Python (remote GPU)"
CELLS = [
    "import ipywidgets as w\n"
    "sl = w.IntSlider(3, min=0, max=100, description='remote')\n"
    "lab = w.Label('waiting')\n"
    "sl.observe(lambda ch: setattr(lab, 'value', f'remote saw {ch[\"new\"]}'), 'value')\n"
    "display(sl, lab)",
    "from ipywidgets import interact\n"
    "@interact(x=(0, 10))\n"
    "def square(x=2):\n"
    "    print('square', x * x)",
    "import time\nfrom tqdm.auto import tqdm\n"
    "for i in tqdm(range(30), desc='steps'):\n    time.sleep(0.02)",
]


@pytest.fixture(scope="module")
def remote_page(page: Any, lab: Any) -> Any:
    write_notebook(lab.root / "remote_widgets.ipynb", CELLS, "backendai-python", KERNEL)
    # A workspace of its own: with the earlier tests' notebooks open, the status bar can show
    # another tab's kernel of the same name as idle before this notebook's kernel is ready.
    open_notebook(page, lab.open_url("remote_widgets.ipynb", workspace="remote"), KERNEL)
    return page


def drag(page: Any, handle: Any, dx: float) -> None:
    """Drag a slider handle by ``dx`` pixels with the mouse, as a user does."""
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=12)
    page.mouse.up()


def test_drag_runs_the_remote_observer(remote_page: Any) -> None:
    page = remote_page
    out = run_cell(page, 0)
    label = out.locator("div.widget-label")
    wait_text(label, "waiting", timeout=120)
    drag(page, out.locator(".widget-slider .noUi-handle"), 150)
    value = int(wait_text(out.locator(".widget-readout"), r"^\d+$"))
    assert value > 3
    # the remote callback saw every value the drag sent, the last one last
    wait_text(label, rf"^remote saw {value}$")
    shot(page, "11-remote-slider", out)


def test_interact_rerenders(remote_page: Any) -> None:
    page = remote_page
    out = run_cell(page, 1)
    wait_text(out.locator(".widget-output"), "square 4", timeout=60)
    set_readout(out.locator(".widget-slider"), "7")
    wait_text(out.locator(".widget-output"), "square 49")
    assert "square 4\n" not in out.locator(".widget-output").inner_text()
    shot(page, "12-remote-interact", out)


def test_tqdm_bar_reaches_100_percent(remote_page: Any) -> None:
    page = remote_page
    out = run_cell(page, 2)
    wait_text(out, r"(?s)steps:\s*100%.*30/30", timeout=60)
    bar = out.locator(".progress-bar")
    assert re.search(r"width:\s*100%", bar.get_attribute("style") or "")
    shot(page, "13-remote-tqdm", out)


def test_reload_keeps_the_widgets(remote_page: Any) -> None:
    page = remote_page
    before = cell(page, 0).locator("div.widget-label").inner_text()
    cell(page, 0).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+s")
    page.wait_for_timeout(1000)  # the save round trip
    page.reload()
    cell(page, 0).wait_for()
    wait_text(page.locator(".jp-StatusBar-Widget"), rf"{re.escape(KERNEL)} \| Idle", timeout=90)
    # the views come back with the live remote state, not "model not found"
    wait_text(cell(page, 0).locator("div.widget-label"), re.escape(before), timeout=60)
    wait_text(cell(page, 1).locator(".widget-output"), "square 49")
    wait_text(cell(page, 2), r"30/30")
    assert "model not found" not in page.locator(".jp-Notebook").inner_text().lower()
    shot(page, "14-remote-widgets-after-reload")
    # and they still talk to the remote kernel
    set_readout(cell(page, 0).locator(".widget-slider"), "42")
    wait_text(cell(page, 0).locator("div.widget-label"), "remote saw 42")
