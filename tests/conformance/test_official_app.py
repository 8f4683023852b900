"""The OFFICIAL 26.9.6 CLI's ``backend.ai app`` against the local endpoint (issue #6 item 4).

``backend.ai session create`` lists the services, ``backend.ai app NAME jupyter -b PORT`` serves
a working Jupyter (the page loads; a kernel started through the port runs a cell), our own
:class:`AppProxy` does the same against the same ``serve`` process, the terminal websocket runs
``echo``, and — where OpenSSH's ``sshd`` is installed — SSH runs a command through ``-b 9922``
with the session's ``id_container`` key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from backendai_jupyter.client import Client, ClientConfig, parse_endpoints
from backendai_jupyter.client.apps import AppProxy

from .conftest import IMAGE, Endpoint, OfficialCLI

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], out: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"backend.ai app exited {proc.returncode}: {out.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"backend.ai app did not listen on {port}: {out.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def app_session(bai: OfficialCLI) -> Iterator[str]:
    name = f"oa-{secrets.token_hex(4)}"
    result = bai("session", "create", "-t", name, "-r", "cpu=1", "-r", "mem=2g", IMAGE)
    assert result.returncode == 0, result
    out = result.stdout + result.stderr
    assert "This session provides the following app services:" in out and "jupyter" in out, out
    yield name
    bai("session", "destroy", name)


async def _run_cell(base: str, code: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/kernels", json={}) as resp:
            assert resp.status == 201, await resp.text()
            kid = (await resp.json())["id"]
        out = ""
        async with http.ws_connect(f"{base}/api/kernels/{kid}/channels") as ws:
            msg_id = uuid.uuid4().hex
            await ws.send_json({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "t",
                           "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False},
            })
            async for m in ws:
                data = json.loads(m.data)
                if data.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if data["msg_type"] == "stream":
                    out += data["content"]["text"]
                if data["msg_type"] == "status" and data["content"]["execution_state"] == "idle":
                    break
        async with http.delete(f"{base}/api/kernels/{kid}"):
            pass
        return out


def test_official_app_apps_listing(bai: OfficialCLI, app_session: str) -> None:
    result = bai("apps", "-l", app_session)
    assert result.returncode == 0, result
    assert "jupyter" in result.stdout + result.stderr


def test_official_app_jupyter(bai: OfficialCLI, app_session: str, tmp_path: Path) -> None:
    port = _free_port()
    out = tmp_path / "app.out"
    proc = bai.popen("app", app_session, "jupyter", "-b", str(port), out=out)
    try:
        _wait_port(port, proc, out)
        assert "is available at" in out.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=120) as resp:
            assert resp.status == 200
            assert b"Jupyter" in resp.read()
        text = asyncio.run(_run_cell(f"http://127.0.0.1:{port}", "print(6*7)"))
        assert text.strip() == "42"
    finally:
        _stop(proc)


def test_official_app_unknown_service(
    bai: OfficialCLI, app_session: str, tmp_path: Path
) -> None:
    # The CLI prints the failure, then waits for Ctrl-C (asyncio_run_forever) and exits 1.
    out = tmp_path / "unknown.out"
    proc = bai.popen("app", app_session, "no-such-app", "-b", str(_free_port()), out=out)
    try:
        deadline = time.monotonic() + 60
        while "is not supported by the session" not in out.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, out.read_text()
            time.sleep(0.2)
    finally:
        _stop(proc)
    assert "is not supported by the session" in out.read_text()


def _client(endpoint: Endpoint) -> Client:
    return Client(ClientConfig(endpoints=parse_endpoints(endpoint.url),
                               access_key=endpoint.access_key, secret_key=endpoint.secret_key))


def test_our_client_jupyter_and_terminal(endpoint: Endpoint, app_session: str) -> None:
    async def main() -> tuple[str, str]:
        async with _client(endpoint) as client:
            async with AppProxy(client, app_session, "jupyter", port=0) as proxy:
                cell = await _run_cell(proxy.url, "print(6*7)")
            ws = await client.http.ws_connect(f"/stream/session/{app_session}/pty")
            try:
                chars = base64.b64encode(b"echo term-$((6*7))\n").decode()
                await ws.send_json({"type": "stdin", "chars": chars})
                text = ""
                while "term-42" not in text:
                    frame = (await ws.receive(timeout=20)).json()
                    text += base64.b64decode(frame["data"]).decode(errors="replace")
            finally:
                await ws.close()
            return cell, text

    cell, text = asyncio.run(main())
    assert cell.strip() == "42" and "term-42" in text


def test_official_app_sshd(
    bai: OfficialCLI, endpoint: Endpoint, app_session: str, tmp_path: Path
) -> None:
    got_list = bai("apps", "-l", app_session)
    listing = got_list.stdout + got_list.stderr
    if "sshd" not in listing or shutil.which("ssh") is None:
        pytest.skip("no sshd/ssh on this machine (sshd is not advertised)")
    key = tmp_path / "id_container"
    got = bai("session", "download", app_session, "id_container", cwd=tmp_path)
    if got.returncode != 0 or not key.exists():  # the key appears when sshd first starts
        async def start() -> None:
            async with _client(endpoint) as client:
                await client.http.json("POST", f"/session/{app_session}/start-service",
                                       json={"app": "sshd"})
        asyncio.run(start())
        got = bai("session", "download", app_session, "id_container", cwd=tmp_path)
    assert key.exists(), got
    key.chmod(0o600)
    port = 9922 if _port_free(9922) else _free_port()
    out = tmp_path / "ssh.out"
    proc = bai.popen("app", app_session, "sshd", "-b", str(port), out=out)
    try:
        _wait_port(port, proc, out)
        result = subprocess.run(
            ["ssh", "-l", "work", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-i", str(key), "-p", str(port), "127.0.0.1",
             "echo ssh-$((6*7))"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        assert "ssh-42" in result.stdout, result
    finally:
        _stop(proc)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
