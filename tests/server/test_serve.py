"""``backendai-jupyter serve`` as a real process: keys, exports, and no orphans after SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backendai_jupyter.client import Client, ClientConfig, Finished, Output, parse_endpoints
from backendai_jupyter.server.local import ensure_local_endpoint

from .conftest import IMAGE, marked_pids, sleep_marker


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def _read_exports(proc: asyncio.subprocess.Process) -> dict[str, str]:
    assert proc.stdout is not None
    values: dict[str, str] = {}
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line, "server exited early"
        if line.startswith("export "):
            key, _, value = line[7:].strip().partition("=")
            values[key] = value
        if "listening on" in line:
            return values


async def _serve(data_dir: Path, *extra: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backendai_jupyter",
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        "--capacity",
        "cpu=2",
        *extra,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )


@pytest.mark.parametrize("sandbox", ["none", "auto"])
async def test_serve_keys_and_sigterm_leaves_no_orphans(tmp_path: Path, sandbox: str) -> None:
    proc = await _serve(tmp_path, "--sandbox", sandbox)
    exports = await _read_exports(proc)
    keyfile = tmp_path / "keypair.json"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert exports["BACKEND_SECRET_KEY"] and exports["BACKEND_ENDPOINT"].startswith("http://127.")
    config = ClientConfig(
        endpoints=parse_endpoints(exports["BACKEND_ENDPOINT"]),
        access_key=exports["BACKEND_ACCESS_KEY"],
        secret_key=exports["BACKEND_SECRET_KEY"],
    )
    async with Client(config) as client:
        info = await client.sessions.create(IMAGE)
        marker = sleep_marker()
        code = (
            "import subprocess, os\n"
            f"p = subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
            "print(os.getpid(), p.pid, os.getppid())"
        )
        text = ""
        async for ev in client.sessions.execute(info.id, code, transport="rest"):
            if isinstance(ev, Output):
                text += ev.item.data
            assert not isinstance(ev, Finished) or ev.exit_code == 0
    pids = [int(x) for x in text.split()]
    # The kernel's parent: the fork server (zygote), which must not outlive the server either.
    assert pids[2] != proc.pid
    if sandbox == "none":
        assert all(_alive(p) for p in pids)
    daemons = marked_pids(marker)
    assert len(daemons) == 1
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    if sandbox == "none":
        assert not any(_alive(p) for p in pids), pids
    assert not marked_pids(marker) and not any(_alive(p) for p in daemons)
    assert not (tmp_path / "endpoint.json").exists()

    # A second start reuses the keypair and does not print the secret.
    proc = await _serve(tmp_path)
    again = await _read_exports(proc)
    assert again["BACKEND_ACCESS_KEY"] == exports["BACKEND_ACCESS_KEY"]
    assert "BACKEND_SECRET_KEY" not in again
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 30) == 0


def test_ensure_local_endpoint_reuses_server(tmp_path: Path) -> None:
    first = ensure_local_endpoint(tmp_path)
    try:
        assert first["BACKEND_ENDPOINT"].startswith("http://127.0.0.1:")
        second = ensure_local_endpoint(tmp_path)
        assert second == first
    finally:
        pid = json.loads((tmp_path / "endpoint.json").read_text())["pid"]
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.1)


async def test_exit_when_idle_waits_for_sessions(tmp_path: Path) -> None:
    proc = await _serve(tmp_path / "data", "--exit-when-idle", "1")
    try:
        env = await _read_exports(proc)
        config = ClientConfig(
            endpoints=parse_endpoints(env["BACKEND_ENDPOINT"]),
            access_key=env["BACKEND_ACCESS_KEY"],
            secret_key=env["BACKEND_SECRET_KEY"],
        )
        async with Client(config) as client:
            sess = await client.sessions.create(IMAGE)
            await asyncio.sleep(2.5)  # a live session keeps the server up past the idle limit
            assert proc.returncode is None
            await client.sessions.destroy(sess.id)
        # No session and no request: it stops by itself, cleanly.
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()



@pytest.mark.parametrize(
    "args,message",
    [
        (["--port", "99999"], "port must be 0-65535, got 99999"),
        (["--port", "http"], "not a port number: 'http'"),
        (["--api-version", "v3.2017"], "not an API version: 'v3.2017'"),
    ],
)
def test_bad_serve_flags_are_one_line_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from backendai_jupyter.cli import main

    with pytest.raises(SystemExit) as info:
        main(["serve", "--data-dir", str(tmp_path), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def test_running_tells_a_live_process_from_a_dead_or_zombie_one() -> None:
    from backendai_jupyter.server.local import _running

    assert _running(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    for _ in range(100):  # exited but not reaped yet: a zombie, which no longer runs
        with open(f"/proc/{child.pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] == "Z":
                break
        time.sleep(0.05)
    assert not _running(child.pid)
    child.wait()
    assert not _running(child.pid)  # reaped: gone


def test_the_started_endpoint_is_not_our_child(tmp_path: Path) -> None:
    ensure_local_endpoint(tmp_path)
    pid = json.loads((tmp_path / "endpoint.json").read_text())["pid"]
    try:
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rpartition(")")[2].split()[1])
        assert ppid != os.getpid()  # the launcher's child, reparented when it exited
        assert os.getsid(pid) == pid  # a session of its own: our signals and hangups miss it
    finally:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.1)
