"""Notebook-job tests: the ``backendai-jupyter`` command in a subprocess against a private local
endpoint (or the real cluster), with notebooks written per test."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from backendai_jupyter.client import Client, ClientConfig

SHARE = str(Path(__file__).resolve().parents[2] / "share" / "jupyter")
CLUSTER_ENV = Path(os.environ.get("BAI_CLUSTER_ENV", "/tmp/backendai-cluster/user.env"))


def make_notebook(path: Path, *cells: str, parameters: str | None = None) -> Path:
    """A notebook whose first cell (if ``parameters``) is tagged ``parameters``."""
    nb = nbformat.v4.new_notebook()
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


class Endpoint:
    """An endpoint's ``BACKEND_*`` variables and helpers to run the command against it."""

    def __init__(self, env: dict[str, str], jobs_dir: Path) -> None:
        self.env = env
        self.jobs_dir = jobs_dir

    def environ(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
        base["JUPYTER_PATH"] = os.pathsep.join(
            p for p in (SHARE, os.environ.get("JUPYTER_PATH", "")) if p)
        base["BACKENDAI_JUPYTER_JOBS_DIR"] = str(self.jobs_dir)
        base.update(self.env)
        return base

    def popen(self, *args: str, cwd: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "backendai_jupyter", *args], cwd=cwd, env=self.environ(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def run(self, *args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        proc = self.popen(*args, cwd=cwd)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def create_folder(self, name: str) -> None:
        async def create() -> None:
            async with Client(ClientConfig.from_env(self.env)) as client:
                if name not in {f.name for f in await client.folders.list()}:
                    await client.folders.create(name)

        asyncio.run(create())

    def delete_files(self, folder: str, path: str) -> None:
        async def delete() -> None:
            async with Client(ClientConfig.from_env(self.env)) as client:
                await client.folders.delete_files(folder, [path], recursive=True)

        asyncio.run(delete())

    def sessions(self, prefix: str = "bjob-") -> list[dict[str, Any]]:
        """Live sessions whose name starts with ``prefix`` (TERMINATING: destroy was asked)."""
        async def ls() -> list[dict[str, Any]]:
            async with Client(ClientConfig.from_env(self.env)) as client:
                found = await client.sessions.list(fields=("name", "status"))
                return [s for s in found if str(s.get("name", "")).startswith(prefix)
                        and s.get("status") != "TERMINATING"]

        return asyncio.run(ls())


def _answers(record: Path) -> bool:
    try:
        url = json.loads(record.read_text())["url"]
        with urllib.request.urlopen(url + "/", timeout=2):
            return True
    except (OSError, ValueError, KeyError):
        return False


@pytest.fixture(scope="session")
def local_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A private local endpoint (this checkout's server, as the embedded default starts it),
    stopped at the end."""
    from backendai_jupyter.server.local import ensure_local_endpoint
    from backendai_jupyter.server.manager.state import load_or_create_keypair

    data = tmp_path_factory.mktemp("local")
    load_or_create_keypair(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "SORNA_"))}
    with open(data / "server.log", "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "backendai_jupyter", "serve", "--port", "0",
             "--data-dir", str(data)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=data)
    try:
        deadline = time.monotonic() + 60
        while not _answers(data / "endpoint.json"):
            assert server.poll() is None and time.monotonic() < deadline, "no local endpoint"
            time.sleep(0.1)
        credentials = ensure_local_endpoint(data)  # finds this server (it answers by now)
        yield Endpoint(dict(credentials), tmp_path_factory.mktemp("jobs-local"))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


@pytest.fixture(scope="session")
def cluster_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Endpoint:
    if not CLUSTER_ENV.is_file():
        if os.environ.get("BAI_REQUIRE_CLUSTER") == "1":
            pytest.fail(f"the real cluster is required but {CLUSTER_ENV} does not exist")
        pytest.skip(f"no real cluster ({CLUSTER_ENV} missing)")
    values: dict[str, str] = {}
    for line in CLUSTER_ENV.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key] = value
    env = {k: v for k, v in values.items() if k.startswith("BACKEND_")}
    env["BACKEND_IMAGE"] = values["BAI_IMAGE"]
    return Endpoint(env, tmp_path_factory.mktemp("jobs-cluster"))


def read_summary(directory: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((directory / "summary.json").read_text())["cases"]
    return cases


Notebook = Callable[..., Path]
