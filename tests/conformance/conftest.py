"""The local endpoint as a real subprocess (``python -m backendai_jupyter serve``) and the
OFFICIAL Backend.AI client (``$BAI_CLIENT_VENV/bin/backend.ai``, 26.9.6) to drive it.

``BAI_CLIENT_VENV`` comes from the environment or from the cluster's ``user.env``
(``BAI_CLUSTER_ENV``, default ``/tmp/backendai-cluster/user.env``; ``cluster.sh install``/``up``
build it). Without it the CLI tests skip — unless ``BAI_REQUIRE_CLUSTER=1``, where that fails.
The CLI always runs in an empty temporary directory (it loads ``.env`` with override) with a
private ``HOME``, and gets the endpoint and keypair through the environment only.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

IMAGE = "cr.backend.ai/stable/python:3.13-ubuntu24.04"
READY_LINE = "# Backend.AI local endpoint"


def _env_file() -> dict[str, str]:
    path = Path(os.environ.get("BAI_CLUSTER_ENV", "/tmp/backendai-cluster/user.env"))
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.lstrip().startswith("#"):
                values[key.strip()] = value.strip()
    return values


def official_cli_path() -> Path | None:
    venv = os.environ.get("BAI_CLIENT_VENV") or _env_file().get("BAI_CLIENT_VENV")
    if not venv:
        return None
    exe = Path(venv) / "bin" / "backend.ai"
    return exe if exe.is_file() else None


def official_cli_release(exe: Path) -> tuple[int, ...]:
    """The official client's release (``(26, 9, 6)``, ``(24, 3, 11)``), from its venv's metadata:
    ``cluster.sh`` builds one per server version, and the tests expect what that CLI prints."""
    for info in sorted(exe.parent.parent.glob("lib/python*/site-packages/backend*ai_client-*")):
        version = info.name.split("-", 1)[1].removesuffix(".dist-info")
        return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())
    return ()


@dataclass
class Endpoint:
    """One ``serve`` subprocess: its URL, keypair and API version."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    url: str
    access_key: str
    secret_key: str
    api_version: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_endpoint(data_dir: Path, api_version: str = "v9.20250722") -> Endpoint:
    """Start ``serve`` on a free port (``--port 0``) and parse its ``export`` lines."""
    data_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = data_dir.parent / "serve.out", data_dir.parent / "serve.err"
    cmd = [
        sys.executable, "-m", "backendai_jupyter", "serve", "--host", "127.0.0.1",
        "--port", "0", "--data-dir", str(data_dir), "--api-version", api_version,
        "--capacity", "cpu=8", "--capacity", "mem=16g",
    ]
    # Files, not pipes: nobody drains the server's log while the tests run.
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = out_path.read_text()
        if READY_LINE in text:
            break
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited {proc.returncode}: {err_path.read_text()[-2000:]}")
        time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError(f"serve did not start: {err_path.read_text()[-2000:]}")
    exports = dict(re.findall(r"^export (BACKEND_\w+)=(.*)$", text, re.M))
    return Endpoint(
        proc=proc,
        data_dir=data_dir,
        url=exports["BACKEND_ENDPOINT"],
        access_key=exports["BACKEND_ACCESS_KEY"],
        secret_key=exports["BACKEND_SECRET_KEY"],
        api_version=api_version,
    )


class OfficialCLI:
    """Runs ``backend.ai ARGS`` against one endpoint from an empty working directory."""

    def __init__(self, exe: Path, endpoint: Endpoint, workdir: Path) -> None:
        self.exe = exe
        self.endpoint = endpoint
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        home = workdir.parent / (workdir.name + "-home")
        home.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKEND_", "BAI_"))}
        env.update(
            HOME=str(home),
            BACKEND_ENDPOINT=endpoint.url,
            BACKEND_ENDPOINT_TYPE="api",
            BACKEND_ACCESS_KEY=endpoint.access_key,
            BACKEND_SECRET_KEY=endpoint.secret_key,
            PYTHONWARNINGS="ignore",  # click warns about the CLI's duplicated --tag option
            PYTHONIOENCODING="utf-8",
            NO_COLOR="1",
            COLUMNS="250",
        )
        env.pop("VIRTUAL_ENV", None)
        self.env = env

    def __call__(
        self, *args: str, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.exe), *args],
            cwd=cwd or self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str, out: Path) -> subprocess.Popen[bytes]:
        with out.open("wb") as f:
            return subprocess.Popen(
                [str(self.exe), *args], cwd=self.workdir, env=self.env,
                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )


@pytest.fixture(scope="session")
def official_cli() -> Path:
    exe = official_cli_path()
    if exe is None:
        if os.environ.get("BAI_REQUIRE_CLUSTER") == "1":
            pytest.fail("the official client venv (BAI_CLIENT_VENV) is required but missing")
        pytest.skip("no official Backend.AI client venv (BAI_CLIENT_VENV; cluster.sh install)")
    return exe


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    ep = start_endpoint(tmp_path_factory.mktemp("local") / "data")
    try:
        yield ep
    finally:
        ep.stop()


@pytest.fixture(scope="module")
def bai(
    official_cli: Path, endpoint: Endpoint, tmp_path_factory: pytest.TempPathFactory
) -> OfficialCLI:
    return OfficialCLI(official_cli, endpoint, tmp_path_factory.mktemp("cli") / "work")
