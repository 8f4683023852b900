"""Browser end-to-end fixtures: a local endpoint, JupyterLab on it, headless Chromium driving it.

Needs Debian's ``chromium`` and the ``e2e`` extra (``scripts/e2e_setup.sh`` installs both).
Without them the tests skip, unless ``BAI_REQUIRE_E2E=1``, where that is a failure. Screenshots
go to ``artifacts/e2e/`` (gitignored), also when a test fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "e2e"
CHROMIUM = os.environ.get("BAI_CHROMIUM", "/usr/bin/chromium")


def _missing() -> list[str]:
    missing = []
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing.append(f"chromium ({CHROMIUM})")
    for module in ("jupyterlab", "playwright", "ipywidgets", "nbformat"):
        if importlib.util.find_spec(module) is None:
            missing.append(module)
    return missing


@pytest.fixture(scope="session")
def e2e_ready() -> None:
    missing = _missing()
    if missing:
        why = f"e2e prerequisites missing: {', '.join(missing)} (run scripts/e2e_setup.sh)"
        if os.environ.get("BAI_REQUIRE_E2E") == "1":
            pytest.fail(why)
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


class _Secretive(dict[str, str]):
    """``BACKEND_*`` values whose repr (in a failing test's traceback) hides the secret key."""

    def __repr__(self) -> str:
        return repr({k: "***" if "SECRET" in k else v for k, v in self.items()})


@pytest.fixture(scope="session")
def endpoint_env(
    e2e_ready: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """A local endpoint (cpu=4, mem=8g) in a subprocess; its ``BACKEND_*`` variables."""
    data_dir = tmp_path_factory.mktemp("e2e-endpoint")
    cmd = [sys.executable, "-m", "backendai_jupyter", "serve", "--port", "0"]
    cmd += ["--data-dir", str(data_dir), "--capacity", "cpu=4", "--capacity", "mem=8g"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert proc.stdout is not None
    values: dict[str, str] = _Secretive()
    for line in proc.stdout:
        if line.startswith("export "):
            key, _, value = line[len("export ") :].strip().partition("=")
            values[key] = value
        elif "listening on" in line:
            break
    if "BACKEND_SECRET_KEY" not in values:
        _stop(proc)
        pytest.fail("the local endpoint did not start")
    try:
        yield values
    finally:
        _stop(proc)


@dataclass(frozen=True)
class Lab:
    url: str
    token: str
    root: Path

    def open_url(self, path: str, workspace: str | None = None) -> str:
        """The page for ``path``; in a workspace of its own (no other notebook's tabs) if named."""
        where = f"workspaces/{workspace}/tree" if workspace else "tree"
        return f"{self.url}/lab/{where}/{path}?token={self.token}"


def _wait_ready(proc: subprocess.Popen[Any], status_url: str, timeout: float) -> bool:
    """True once ``status_url`` answers; False if the process exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(status_url, timeout=2):
                return True
        except OSError:
            time.sleep(0.25)
    return False


@pytest.fixture(scope="session")
def lab(endpoint_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """``jupyter lab`` on a free port, with the endpoint's ``BACKEND_*`` in its environment."""
    base = tmp_path_factory.mktemp("e2e-lab")
    root, config = base / "notebooks", base / "config"
    (config / "labconfig").mkdir(parents=True)
    root.mkdir()
    # No "official news?" toast over the screenshots.
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    env.update(endpoint_env)
    env.update(
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        IPYTHONDIR=str(base / "ipython"),
        PYTHONWARNINGS="ignore",  # the kernels must not turn library warnings into errors
    )
    log = (base / "jupyter.log").open("wb")
    # The free port can be taken by another process between the probe and the server's bind
    # (a busy CI machine): start again on a new port when the server exits early.
    for attempt in range(3):
        port = _free_port()
        cmd = [
            sys.executable, "-m", "jupyter", "lab", "--no-browser",
            f"--IdentityProvider.token={token}", "--ip", "127.0.0.1", "--port", str(port),
            f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
        ]  # fmt: skip
        if os.geteuid() == 0:  # CI containers
            cmd.append("--allow-root")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
        url = f"http://127.0.0.1:{port}"
        ready = _wait_ready(proc, f"{url}/api/status?token={token}", 60)
        if ready or attempt == 2:
            break
        _stop(proc)
    try:
        if not ready:
            pytest.fail(f"jupyter lab did not start; see {base / 'jupyter.log'}")
        yield Lab(url, token, root)
    finally:
        _stop(proc)
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(base / "jupyter.log", ARTIFACTS / "jupyter.log")


@pytest.fixture(scope="session")
def browser(e2e_ready: None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    try:
        yield pg
    finally:
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep a screenshot of the page a failed test left behind."""
    report = yield
    page = getattr(item, "funcargs", {}).get("page")
    if report.when == "call" and report.failed and page is not None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(ARTIFACTS / f"FAILED-{item.name}.png"))
        except Exception as e:  # a dead browser must not hide the real failure
            report.sections.append(("screenshot", f"could not take one: {e}"))
    return report
