"""The widget models against the local endpoint (cpu=4, mem=8g): no browser, real requests."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import ipywidgets as w
import pytest

from backendai_jupyter.client import Client
from backendai_jupyter.widgets import (
    FolderBrowser,
    ResourcePicker,
    SessionDashboard,
    folder_browser,
    resource_picker,
    session_dashboard,
)
from backendai_jupyter.widgets._base import Progress
from backendai_jupyter.workspace import Workspace
from backendai_jupyter.workspace.loop import run

TIMEOUT = 60


def buttons(widget: w.Widget) -> dict[str, w.Button]:
    """Every button of a widget tree by its caption, as a user sees them."""
    found: dict[str, w.Button] = {}
    if isinstance(widget, w.Button):
        found[widget.description] = widget
    for child in getattr(widget, "children", ()):
        found.update(buttons(child))
    return found


@pytest.fixture
def picker(client: Client) -> Iterator[ResourcePicker]:
    p = resource_picker(client)
    p.wait(TIMEOUT)
    yield p
    p.close().result(TIMEOUT)


# -- resource picker -------------------------------------------------------------------------------


def test_picker_is_bounded_by_check_presets(picker: ResourcePicker) -> None:
    cpu, mem = picker.sliders_box.children
    assert (cpu.description, cpu.min, cpu.max) == ("cpu", 1, 4)
    assert (mem.description, mem.min, mem.max) == ("mem (GiB)", 0.25, 8.0)
    assert "cpu 4" in picker.bounds_html.value and "mem 8.0 GiB" in picker.bounds_html.value
    # The first allocatable preset that fits is the default.
    assert picker.preset.value == "cpu01-small"
    assert picker.value == {"cpu": "1", "mem": "1g"}
    assert picker.to_flags() == ["cpu=1", "mem=1g"]
    labels = dict(picker.preset.options)
    assert "cpu03-large: cpu 8, mem 16.0 GiB  (not allocatable now)" in labels
    assert picker.status.value.endswith("ready</span>")


def test_picker_sliders_feed_flags_and_callbacks(picker: ResourcePicker) -> None:
    seen: list[dict[str, str]] = []
    picker.on_change(seen.append)
    cpu, mem = picker.sliders_box.children
    cpu.value = 2  # what dragging the slider in the browser does
    mem.value = 4.0
    assert picker.preset.value == ""  # moved by hand: custom
    assert picker.value == {"cpu": "2", "mem": "4g"}
    assert picker.to_flags() == ["cpu=2", "mem=4g"]
    assert picker.run_args() == "-r cpu=2 -r mem=4g"
    assert picker.flags_text.value == "run -r cpu=2 -r mem=4g"
    assert seen[-2:] == [{"cpu": "2", "mem": "1g"}, {"cpu": "2", "mem": "4g"}]
    picker.set(cpu=10, mem="1.5g")  # beyond what is allocatable: clamped by the slider
    assert picker.value == {"cpu": "4", "mem": "1.5g"}
    with pytest.raises(KeyError, match="cuda.shares"):
        picker.set(cuda_shares=1)


def test_picker_presets(picker: ResourcePicker) -> None:
    picker.set(cpu=3)
    picker.preset.value = "cpu03-large"  # 8 cpu, 16 GiB: marked not allocatable
    assert "does not fit" in picker.status.value
    assert picker.value["cpu"] == "3"
    picker.preset.value = "cpu01-small"
    assert picker.value == {"cpu": "1", "mem": "1g"}
    assert picker.resource_opts == {}


def test_picker_keeps_the_choice_across_refresh(picker: ResourcePicker) -> None:
    picker.set(cpu=2, mem=2)
    buttons(picker.widget)["Refresh"].click()
    picker.wait(TIMEOUT)
    future = picker.refresh()
    assert isinstance(future, concurrent.futures.Future)
    future.result(TIMEOUT)
    assert picker.value == {"cpu": "2", "mem": "2g"}


def test_picker_image_choice(picker: ResourcePicker) -> None:
    # The local endpoint has no image list: the default image is offered, any text is accepted.
    assert picker.image == "cr.backend.ai/stable/python:3.13-ubuntu24.04"
    picker.image_box.value = "python:3.12"
    assert picker.image == "python:3.12"
    assert picker.config_line() == "%backendai config image=python:3.12 resources=cpu=1,mem=1g"


def test_picker_starts_a_session_with_the_choice(picker: ResourcePicker, client: Client) -> None:
    picker.set(cpu=2, mem=0.5)
    buttons(picker.widget)["Start session"].click()
    picker.wait(120)
    info = picker.last_session
    assert info is not None and info.status == "RUNNING"
    assert f"session {info.name} is RUNNING" in picker.status.value
    try:
        rows = {r["name"]: r for r in run(client.sessions.list(), TIMEOUT)}
        assert info.name in rows
        slots = rows[info.name]["occupied_slots"]
        assert '"cpu": "2"' in slots.replace("'", '"') or "'cpu': '2'" in slots
    finally:
        run(client.sessions.destroy(info.id), TIMEOUT)


def test_apply_to_the_proxy_kernel(picker: ResourcePicker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The proxy kernel's session settings live in its workspace.
    workspace = Workspace(env={})
    shell = SimpleNamespace(kernel=SimpleNamespace(workspace=workspace))
    monkeypatch.setattr("IPython.get_ipython", lambda: shell)
    picker.set(cpu=2, mem=4)
    picker.image_box.value = "python:3.12"
    buttons(picker.widget)["Apply to kernel"].click()
    assert workspace.settings.image == "python:3.12"
    assert dict(workspace.settings.resources) == {"cpu": "2", "mem": "4g"}
    assert "kernel configured" in picker.status.value


def test_apply_outside_the_proxy_kernel_says_what_to_do(picker: ResourcePicker) -> None:
    text = picker.apply_to_kernel()  # no IPython here at all
    assert text == (
        "not the Backend.AI kernel: use %backendai run -r cpu=1 -r mem=1g ... here, or "
        "%backendai config image=cr.backend.ai/stable/python:3.13-ubuntu24.04 "
        "resources=cpu=1,mem=1g in the Backend.AI kernel"
    )


def test_actions_return_at_once(client: Client) -> None:
    """A button never waits for the network: the work is a future on the background loop."""
    gate = threading.Event()
    picker = ResourcePicker(client)
    picker.wait(TIMEOUT)

    async def slow() -> None:
        while not gate.is_set():
            import asyncio

            await asyncio.sleep(0.01)

    t0 = time.monotonic()
    future = picker._submit(slow(), "busy…")
    assert time.monotonic() - t0 < 0.5 and not future.done()
    assert "busy…" in picker.status.value
    with pytest.raises(TimeoutError):
        picker.wait(0.05)
    gate.set()
    picker.wait(TIMEOUT)
    picker.close().result(TIMEOUT)


def test_errors_go_to_the_status_line(client: Client) -> None:
    picker = ResourcePicker(client)
    picker.wait(TIMEOUT)

    async def fail() -> None:
        raise RuntimeError("boom")

    picker._submit(fail())
    with pytest.raises(RuntimeError, match="boom"):
        picker.wait(TIMEOUT)
    assert "RuntimeError: boom" in picker.status.value and "bai-error" in picker.status.value
    picker.close().result(TIMEOUT)


def test_widget_builds_its_own_client_from_the_environment(
    endpoint_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in endpoint_env.items():
        monkeypatch.setenv(key, value)
    dashboard = session_dashboard()
    dashboard.wait(TIMEOUT)
    assert dashboard.status.value.endswith("session(s)</span>")
    dashboard.close().result(TIMEOUT)  # closes the client it built


# -- folder browser --------------------------------------------------------------------------------


@pytest.fixture
def browser(client: Client) -> Iterator[FolderBrowser]:
    b = folder_browser(client)
    b.wait(TIMEOUT)
    yield b
    b.close().result(TIMEOUT)


def test_folder_lifecycle_and_transfers(browser: FolderBrowser, tmp_path: Path) -> None:
    ui = buttons(browser.widget)
    browser.new_folder.value = "wtest"
    ui["Create folder"].click()
    browser.wait(TIMEOUT)
    assert browser.current == "wtest" and "wtest" in browser.folder.options
    assert browser.files.options == ()

    browser.new_dir.value = "sub"
    ui["mkdir"].click()
    browser.wait(TIMEOUT)
    assert browser.files.options == (("sub/", "sub"),)

    browser.files.value = "sub"
    ui["Open"].click()
    browser.wait(TIMEOUT)
    assert browser.path == "sub" and "wtest:/sub" in browser.path_html.value

    # A small file from the browser: what FileUpload sets when the user picks one (ipywidgets 8).
    small = os.urandom(1 << 20)
    browser.uploader.value = (
        {
            "name": "small.bin",
            "type": "application/octet-stream",
            "size": len(small),
            "last_modified": datetime.now(timezone.utc),
            "content": memoryview(small),
        },
    )
    assert browser.uploader.value == ()  # taken, and cleared for the next pick
    browser.wait(TIMEOUT)
    assert ("small.bin  (1.0 MiB)", "small.bin") in browser.files.options

    # A large file by path, streamed in chunks with a progress bar.
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 << 20))
    browser.local_path.value = str(big)
    ui["Upload path"].click()
    browser.wait(TIMEOUT)
    row = browser.transfers.children[-1]
    bar, label = row.children
    assert bar.value == 1.0 and bar.bar_style == "success"
    assert label.value == "upload big.bin: done (20.0 MiB)"
    assert "uploaded big.bin (20.0 MiB) to /sub/big.bin" in browser.status.value

    # Download it back to the Jupyter machine.
    browser.files.value = "big.bin"
    browser.download_dir.value = str(tmp_path / "dl")
    ui["Download"].click()
    browser.wait(TIMEOUT)
    assert (tmp_path / "dl" / "big.bin").read_bytes() == big.read_bytes()
    assert browser.transfers.children[-1].children[1].value == "download big.bin: done (20.0 MiB)"

    browser.files.value = "small.bin"
    ui["Delete"].click()
    browser.wait(TIMEOUT)
    assert [v for _, v in browser.files.options] == ["big.bin"]

    ui["Up"].click()
    browser.wait(TIMEOUT)
    assert browser.path == "" and browser.files.options == (("sub/", "sub"),)

    # Deleting a folder takes two clicks.
    ui["Delete folder"].click()
    assert ui["Delete folder"].description == "Really delete wtest?"
    assert browser.current == "wtest"
    ui["Delete folder"].click()
    browser.wait(TIMEOUT)
    assert "wtest" not in browser.folder.options
    assert "deleted folder wtest" in browser.status.value


def test_folder_browser_reports_bad_input(browser: FolderBrowser, tmp_path: Path) -> None:
    ui = buttons(browser.widget)
    ui["Create folder"].click()
    assert "type a folder name first" in browser.status.value
    browser.local_path.value = str(tmp_path / "missing.bin")
    ui["Upload path"].click()
    assert "no such file or directory on the Jupyter machine" in browser.status.value


def test_progress_rows_throttle_updates() -> None:
    row = Progress("x", interval=60)
    row.update(0, 100)
    row.update(50, 100)  # within the interval: skipped
    assert row.bar.value == 0.0
    row.update(100, 100)  # completion always shows
    assert row.bar.value == 1.0 and row.label.value == "x: 100 B / 100 B"
    row.finish(ok=False)
    assert row.bar.bar_style == "danger"


# -- session dashboard -----------------------------------------------------------------------------


def test_dashboard_lists_logs_and_terminates(client: Client) -> None:
    info = run(client.sessions.create("python:3", resources={"cpu": "1", "mem": "512m"}), 120)
    dashboard = SessionDashboard(client)
    try:
        dashboard.wait(TIMEOUT)
        keys = [v for _, v in dashboard.sessions.options]
        assert info.id in keys
        dashboard.sessions.value = info.id
        label = dict((v, k) for k, v in dashboard.sessions.options)[info.id]
        assert label.startswith(f"{info.name}  [RUNNING]  python:3  cpu=1")
        ui = buttons(dashboard.widget)
        ui["Logs"].click()
        dashboard.wait(TIMEOUT)
        assert f"logs of {info.id}" in dashboard.status.value
        ui["Terminate"].click()
        dashboard.wait(TIMEOUT)
        assert info.id not in [v for _, v in dashboard.sessions.options]
        assert f"terminated {info.id}" in dashboard.status.value
        ui["Terminate"].click()  # nothing selected any more
        assert "select a session first" in dashboard.status.value
    finally:
        dashboard.close().result(TIMEOUT)


def test_dashboard_auto_refresh(client: Client) -> None:
    dashboard = SessionDashboard(client, interval=0.05)
    dashboard.wait(TIMEOUT)
    dashboard.status.value = ""
    dashboard.auto_refresh.value = True
    deadline = time.monotonic() + 10
    while "session(s)" not in dashboard.status.value and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "session(s)" in dashboard.status.value
    dashboard.auto_refresh.value = False
    assert dashboard._auto is None
    dashboard.close().result(TIMEOUT)
