"""Crash safety (issue 11, deliverable 4): SIGKILL the endpoint during a running cell, a running
service and an upload; start it again: no stray process, the sessions TERMINATED with a reason,
every storage folder intact, the upload resumable from where it stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from backendai_jupyter.client import Client, ClientConfig, parse_endpoints
from backendai_jupyter.server.agent.reaper import REAPED_REASON
from backendai_jupyter.server.agent.sandbox import probe_bwrap

from .conftest import IMAGE, marked_pids, proc_alive, sleep_marker
from .test_serve import _read_exports, _serve

pytestmark = pytest.mark.timeout(240)
TUS = {"Tus-Resumable": "1.0.0"}


def _stamp(pid: int) -> tuple[int, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return pid, stat[stat.rfind(")") + 2 :].split()[19]


def _tree(root: int) -> set[int]:
    """``root``'s live descendants (host pids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rfind(")") + 2 :].split()[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _same_process_alive(stamps: set[tuple[int, str]]) -> set[int]:
    return {pid for pid, start in stamps if _stamp(pid) == (pid, start) and proc_alive(pid)}


def _client(exports: dict[str, str]) -> Client:
    return Client(ClientConfig(
        endpoints=parse_endpoints(exports["BACKEND_ENDPOINT"]),
        access_key=exports["BACKEND_ACCESS_KEY"], secret_key=exports["BACKEND_SECRET_KEY"],
    ))


@pytest.mark.parametrize("sandbox", ["none", "auto"])
async def test_sigkill_then_restart_reaps_everything(tmp_path: Path, sandbox: str) -> None:
    data = tmp_path / "data"
    proc = await _serve(data, "--sandbox", sandbox)
    try:
        await _crash_and_restart(tmp_path, data, sandbox, proc)
    finally:  # a failed test leaves no endpoint behind
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _crash_and_restart(
    tmp_path: Path, data: Path, sandbox: str, proc: asyncio.subprocess.Process
) -> None:
    exports = await _read_exports(proc)
    cell_marker, daemon_marker = sleep_marker(), sleep_marker()
    payload = os.urandom(300_000)
    async with _client(exports) as client:
        # A storage folder with a finished file, and an upload stopped half-way.
        await client.folders.create("keep")
        (tmp_path / "done.bin").write_bytes(b"kept" * 1000)
        await client.folders.upload("keep", tmp_path / "done.bin", "done.bin")
        info = await client.http.json(
            "POST", "/folders/keep/request-upload", json={"path": "big.bin", "size": len(payload)}
        )
        upload_url = URL(info["url"]).with_query(token=info["token"])
        async with aiohttp.ClientSession() as http:
            headers = {**TUS, "Upload-Offset": "0",
                       "Content-Type": "application/offset+octet-stream"}
            async with http.patch(upload_url, data=payload[:100_000], headers=headers) as resp:
                assert resp.status == 204
        # A running cell (with a child and a double-forked daemon) and a running service.
        cell = await client.sessions.create(IMAGE, name="crash-cell")
        code = (
            f"import os, subprocess\n"
            f"os.system('setsid sh -c \"sleep {daemon_marker} &\" </dev/null >/dev/null 2>&1')\n"
            f"subprocess.run(['sleep', '{cell_marker}'])\n"
        )
        running = asyncio.create_task(_drain(client, cell.id, code))
        svc = await client.sessions.create(IMAGE, name="crash-svc")
        await client.http.json("POST", f"/session/{svc.id}/start-service", json={"app": "jupyter"})
        for _ in range(100):
            if marked_pids(cell_marker) and marked_pids(daemon_marker):
                break
            await asyncio.sleep(0.1)
        assert marked_pids(cell_marker) and marked_pids(daemon_marker)
        session_pids = _tree(proc.pid) | marked_pids(daemon_marker)
        jupyter = {p for p in session_pids if b"jupyter_server" in _cmdline(p)}
        assert jupyter, "the service runs"
        stamps = {s for p in session_pids if (s := _stamp(p)) is not None}
        assert len(stamps) >= 5
        proc.send_signal(signal.SIGKILL)  # no cleanup of its own
        await proc.wait()
        running.cancel()
        with contextlib.suppress(BaseException):
            await running

    assert len(list((data / "running").glob("*.json"))) == 2  # what the next start needs
    if probe_bwrap() is None and sandbox == "auto":
        # A killed endpoint takes its sandboxed sessions with it, before any restart.
        for _ in range(100):
            if not _same_process_alive(stamps):
                break
            await asyncio.sleep(0.1)
        assert not _same_process_alive(stamps)
    proc = await _serve(data, "--sandbox", sandbox)
    try:
        exports = {**exports, **await _read_exports(proc)}  # the same keypair; a new port
        for _ in range(50):
            if not _same_process_alive(stamps):
                break
            await asyncio.sleep(0.1)
        assert not _same_process_alive(stamps), "a process of the killed endpoint survived"
        assert not marked_pids(cell_marker) and not marked_pids(daemon_marker)
        async with _client(exports) as client:
            ended = await client.sessions.list(status="TERMINATED",
                                               fields=["name", "status", "status_info"])
            assert sorted((s["name"], s["status_info"]) for s in ended) == [
                ("crash-cell", REAPED_REASON), ("crash-svc", REAPED_REASON)]
            assert await client.sessions.list() == []
            # The folder survived with its file; the upload goes on from where it stopped.
            files = {f["name"] for f in await client.folders.list_files("keep")}
            assert "done.bin" in files
            got = await client.folders.download("keep", "done.bin", tmp_path / "done.down")
            assert got.read_bytes() == b"kept" * 1000
            new_url = upload_url.with_host(URL(exports["BACKEND_ENDPOINT"]).host or "") \
                .with_port(URL(exports["BACKEND_ENDPOINT"]).port)
            async with aiohttp.ClientSession() as http:
                async with http.head(new_url, headers=TUS) as resp:
                    assert resp.status == 200
                    offset = int(resp.headers["Upload-Offset"])
                assert offset == 100_000
                headers = {**TUS, "Upload-Offset": str(offset),
                           "Content-Type": "application/offset+octet-stream"}
                async with http.patch(new_url, data=payload[offset:], headers=headers) as resp:
                    assert resp.status == 204
            got = await client.folders.download("keep", "big.bin", tmp_path / "big.down")
            assert got.read_bytes() == payload
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
    assert proc.returncode == 0


async def _drain(client: Client, sid: str, code: str) -> None:
    async for _ in client.sessions.execute(sid, code, transport="rest"):
        pass
