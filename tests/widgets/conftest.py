"""Widget-model tests: the widgets, without a browser, against a real local endpoint.

The endpoint is ``python -m backendai_jupyter serve --port 0`` in a subprocess with a fixed
capacity (cpu=4, mem=8g), so the allocatable bounds are known. The widgets run their actions on
the magics' background loop; tests drive them by setting widget values and clicking buttons,
then wait for the actions with ``widget.wait()``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ipywidgets")

from backendai_jupyter.client import Client, ClientConfig  # noqa: E402
from backendai_jupyter.workspace.loop import run  # noqa: E402

CAPACITY = ("cpu=4", "mem=8g")


def start_local_endpoint(
    data_dir: Path, *capacity: str
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start ``serve --port 0``; return the process and its ``BACKEND_*`` variables."""
    cmd = [sys.executable, "-m", "backendai_jupyter", "serve", "--port", "0"]
    cmd += ["--data-dir", str(data_dir)]
    for item in capacity:
        cmd += ["--capacity", item]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert proc.stdout is not None
    values: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("export "):
            key, _, value = line[len("export ") :].strip().partition("=")
            values[key] = value
        elif "listening on" in line:
            return proc, values
    stop_local_endpoint(proc)
    raise RuntimeError(f"the local endpoint did not start (exit code {proc.returncode})")


def stop_local_endpoint(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="session")
def endpoint_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    proc, values = start_local_endpoint(tmp_path_factory.mktemp("widgets-endpoint"), *CAPACITY)
    try:
        yield values
    finally:
        stop_local_endpoint(proc)


@pytest.fixture(scope="session")
def client(endpoint_env: dict[str, str]) -> Iterator[Client]:
    """One client for the session; it lives on the widgets' background loop."""
    c = Client(ClientConfig.from_env(endpoint_env))
    try:
        yield c
    finally:
        run(c.close(), timeout=30)
