"""Magics tests: an in-process IPython shell with ``%load_ext backendai_jupyter``, talking to the
embedded local endpoint started once per session (``python -m backendai_jupyter serve --port 0``).

Every test must leave no live session behind; the autouse ``no_leftovers`` fixture checks it (and
destroys stragglers so that one failure does not cascade).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.testing.globalipapp import get_ipython

from backendai_jupyter.magics import BackendAIMagics
from backendai_jupyter.workspace import loop as _loop

IMAGE = "python"


@pytest.fixture(scope="session")
def local_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data_dir = tmp_path_factory.mktemp("bai-local")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    log = open(data_dir / "server.err", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "backendai_jupyter", "serve", "--port", "0",
         "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=log, text=True, env=env,
    )
    values: dict[str, str] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("export "):
                key, _, value = line[len("export "):].strip().partition("=")
                values[key] = value
            if line.startswith("# Backend.AI local endpoint"):
                break
        else:
            pytest.fail("the local endpoint did not start: " + (data_dir / "server.err").read_text())
        if "BACKEND_SECRET_KEY" not in values:
            values["BACKEND_SECRET_KEY"] = json.loads(
                (data_dir / "keypair.json").read_text())["secret_key"]
        values["BACKEND_DATA_DIR_FOR_TESTS"] = str(data_dir)
        yield values
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()


@pytest.fixture(scope="session")
def ip(local_endpoint: dict[str, str]) -> Iterator[Any]:
    saved = {k: os.environ.get(k) for k in local_endpoint}
    os.environ.update({k: v for k, v in local_endpoint.items() if k.startswith("BACKEND_")
                       and k != "BACKEND_DATA_DIR_FOR_TESTS"})
    shell = get_ipython()
    shell.run_line_magic("load_ext", "backendai_jupyter")
    try:
        yield shell
    finally:
        shell.run_line_magic("unload_ext", "backendai_jupyter")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def magics(ip: Any) -> BackendAIMagics:
    m = ip.magics_manager.registry["BackendAIMagics"]
    assert isinstance(m, BackendAIMagics)
    return m


def live_sessions(magics: BackendAIMagics) -> list[str]:
    """Sessions that are not ended or being ended (TERMINATING means destroy was requested)."""
    items = _loop.run(magics.client.sessions.list(fields=("name", "status")))
    return [str(s["name"]) for s in items if s.get("status") != "TERMINATING"]


@pytest.fixture(autouse=True)
def no_leftovers(ip: Any) -> Iterator[None]:
    yield
    m = ip.magics_manager.registry["BackendAIMagics"]
    m.workspace.reset()
    left = live_sessions(m)
    for name in left:
        _loop.run(m.client.sessions.destroy(name, forced=True))
    assert not left, f"sessions left behind: {left}"


@pytest.fixture
def bai(ip: Any) -> Any:
    """``bai("ps --all")`` → ``%backendai ps --all``; ``bai("run ...", cell=...)`` → cell magic."""

    def call(line: str, cell: str | None = None) -> Any:
        if cell is None:
            return ip.run_line_magic("backendai", line)
        return ip.run_cell_magic("backendai", line, cell)

    return call


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path
