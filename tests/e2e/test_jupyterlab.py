"""JupyterLab 4 in headless Chromium, end to end, against a local endpoint.

One scenario, in order: pick resources in the picker and start a session; create a folder, upload
a 50 MB file by path and a 1 MB one through FileUpload; ``%backendai run -r cpu=1 -c "print(1)"``
prints 1; the session dashboard lists and terminates; a cell in the "Backend.AI Python (remote
GPU)" kernel prints its result. Screenshots: ``artifacts/e2e/*.png``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "e2e"

WIDGETS_NB = [
    "from backendai_jupyter.widgets import folder_browser, resource_picker, session_dashboard\n"
    "picker = resource_picker()\npicker",
    "print(picker.to_flags(), picker.last_session.status)",
    "browser = folder_browser()\nbrowser",
    '%load_ext backendai_jupyter\n%backendai run -r cpu=1 -c "print(1)"',
    "dashboard = session_dashboard()\ndashboard",
]
# BACKENDAI_KERNEL_IMAGE is set inside Backend.AI sessions only: proof that the cell ran remotely.
REMOTE_NB = [
    "import os\nprint('remote', 6 * 7, os.environ.get('BACKENDAI_KERNEL_IMAGE'))",
    # A widget made by the proxy kernel's own Python (%%local): its comms go through the proxy.
    "%%local\nfrom backendai_jupyter.widgets import resource_picker\nresource_picker()",
]


def write_notebook(path: Path, cells: list[str], kernel: str, display: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": display, "language": "python"}
    nbformat.write(nb, path)


def shot(page: Any, name: str, element: Any = None) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (element or page).screenshot(path=str(ARTIFACTS / f"{name}.png"))


def cell(page: Any, index: int) -> Any:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(index)


def open_notebook(page: Any, url: str, kernel: str) -> None:
    """Open a notebook and wait until its kernel is idle (cells run before that are dropped)."""
    page.goto(url)
    cell(page, 0).wait_for()
    wait_text(page.locator(".jp-StatusBar-Widget"), rf"{re.escape(kernel)} \| Idle", timeout=90)


def run_cell(page: Any, index: int) -> Any:
    target = cell(page, index)
    target.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    return target


def wait_text(locator: Any, pattern: str, timeout: float = 60) -> str:
    """Wait until ``locator``'s text matches ``pattern``; return the text."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = locator.inner_text() if locator.count() else ""
        if re.search(pattern, text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} did not appear; text is {text[-600:]!r}")


def set_readout(slider: Any, value: str) -> None:
    """Type into an ipywidgets 8 slider's editable readout (what a user can do)."""
    readout = slider.locator(".widget-readout")
    readout.click()
    readout.press("Control+A")
    readout.type(value)
    readout.press("Enter")


def text_input(root: Any, label: str) -> Any:
    return root.locator(f".widget-text:has(label:text-is('{label}')) input")


@pytest.fixture(scope="module")
def notebooks(lab: Any) -> Any:
    write_notebook(lab.root / "widgets.ipynb", WIDGETS_NB, "python3", "Python 3 (ipykernel)")
    write_notebook(
        lab.root / "remote.ipynb", REMOTE_NB, "backendai-python", "Backend.AI Python (remote GPU)"
    )
    return lab


@pytest.fixture(scope="module")
def widgets_page(page: Any, notebooks: Any) -> Any:
    open_notebook(page, notebooks.open_url("widgets.ipynb"), "Python 3 (ipykernel)")
    return page


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e-files") / "big50.bin"
    with path.open("wb") as f:
        for _ in range(50):
            f.write(os.urandom(1 << 20))
    return path


def folder_listing(env: dict[str, str], folder: str) -> dict[str, int]:
    from backendai_jupyter.client import Client, ClientConfig
    from backendai_jupyter.workspace.loop import run

    async def go() -> dict[str, int]:
        async with Client(ClientConfig.from_env(env)) as client:
            entries = await client.folders.list_files(folder, "")
        return {e["name"]: e["size"] for e in entries}

    return run(go(), timeout=60)  # not asyncio.run: Playwright's sync API holds a loop here


def test_resource_picker_starts_a_session(widgets_page: Any, page: Any) -> None:
    page = widgets_page
    out = run_cell(page, 0)
    picker = out.locator(".bai-resource-picker")
    wait_text(picker, r"allocatable now: cpu 4 · mem 8\.0 GiB")
    wait_text(picker.locator(".bai-status"), "ready")
    sliders = picker.locator(".widget-slider")
    set_readout(sliders.nth(0), "2")
    set_readout(sliders.nth(1), "2")
    flags = text_input(picker, "%backendai")
    deadline = time.monotonic() + 20
    while flags.input_value() != "run -r cpu=2 -r mem=2g" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert flags.input_value() == "run -r cpu=2 -r mem=2g"
    picker.locator("button", has_text="Start session").click()
    wait_text(picker.locator(".bai-status"), r"session bjup-\w+ is RUNNING", timeout=90)
    shot(page, "01-resource-picker", out)
    check = run_cell(page, 1)
    wait_text(check.locator(".jp-OutputArea"), re.escape("['cpu=2', 'mem=2g'] RUNNING"))


def test_folder_browser_uploads(
    widgets_page: Any, big_file: Path, endpoint_env: dict[str, str], tmp_path: Path
) -> None:
    page = widgets_page
    out = run_cell(page, 2)
    fb = out.locator(".bai-folder-browser")
    status = fb.locator(".bai-status")
    wait_text(status, "no folders yet|item")
    text_input(fb, "new folder").fill("e2e-data")
    fb.locator("button", has_text="Create folder").click()
    wait_text(status, "created folder e2e-data")
    # A large file by path on the Jupyter machine, streamed in chunks.
    text_input(fb, "local path").fill(str(big_file))
    fb.locator("button", has_text="Upload path").click()
    wait_text(fb, r"upload big50\.bin: done \(50\.0 MiB\)", timeout=120)
    # A small file from the browser through FileUpload.
    small = tmp_path / "small1.bin"
    small.write_bytes(os.urandom(1 << 20))
    # ipywidgets 8 keeps its <input type=file> out of the DOM: answer the file chooser.
    with page.expect_file_chooser() as chooser:
        fb.locator("button.jupyter-widgets", has_text="Upload").first.click()
    chooser.value.set_files(str(small))
    wait_text(status, r"uploaded small1\.bin \(1\.0 MiB\)", timeout=60)
    wait_text(fb.locator(".bai-files select"), r"small1\.bin")
    shot(page, "02-folder-browser", out)
    assert folder_listing(endpoint_env, "e2e-data") == {
        "big50.bin": 50 << 20,
        "small1.bin": 1 << 20,
    }


def test_backendai_run_magic(widgets_page: Any) -> None:
    page = widgets_page
    out = run_cell(page, 3)
    outputs = out.locator(".jp-OutputArea-output")
    deadline = time.monotonic() + 90
    texts: list[str] = []
    while time.monotonic() < deadline:
        texts = [t.strip() for t in outputs.all_inner_texts()]
        if any(line.strip() == "1" for t in texts for line in t.splitlines()):
            break
        if any("Error" in t for t in texts):  # UsageError, a traceback: no "1" will come
            break
        time.sleep(0.3)
    shot(page, "03-backendai-run", out)
    assert any(line.strip() == "1" for t in texts for line in t.splitlines()), texts


def test_session_dashboard(widgets_page: Any) -> None:
    page = widgets_page
    out = run_cell(page, 4)
    dash = out.locator(".bai-session-dashboard")
    wait_text(dash.locator(".bai-status"), r"\d+ session\(s\)")
    wait_text(dash.locator(".bai-sessions select"), r"\[RUNNING\]")
    dash.locator("button", has_text="Logs").click()
    wait_text(dash.locator(".bai-status"), "logs of")
    shot(page, "04-session-dashboard", out)
    before = len(dash.locator(".bai-sessions option").all_inner_texts())
    dash.locator("button", has_text="Terminate").click()
    wait_text(dash.locator(".bai-status"), "terminated")
    assert len(dash.locator(".bai-sessions option").all_inner_texts()) == before - 1


def test_remote_kernel_cell(page: Any, notebooks: Any) -> None:
    open_notebook(page, notebooks.open_url("remote.ipynb"), "Backend.AI Python (remote GPU)")
    out = run_cell(page, 0)
    try:
        wait_text(out.locator(".jp-OutputArea"), r"remote 42 cr\.backend\.ai/stable/python", 120)
    finally:
        shot(page, "05-remote-kernel")
    kernel_name = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar-kernelName")
    assert kernel_name.inner_text() == "Backend.AI Python (remote GPU)"
    local = run_cell(page, 1)
    picker = local.locator(".bai-resource-picker")
    wait_text(picker.locator(".bai-status"), "ready")
    picker.locator("button", has_text="Apply to kernel").click()
    wait_text(picker.locator(".bai-status"), r"kernel configured: image=\S+ resources=cpu=1,mem=1g")
    shot(page, "06-picker-in-proxy-kernel", local)
