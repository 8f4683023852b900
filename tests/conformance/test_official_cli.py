"""The OFFICIAL Backend.AI 26.9.6 CLI against the local endpoint (issue #3 item 6).

Every command below was captured against a real 26.9.6 manager (cluster-facts §9); here the same
commands must succeed against ``python -m backendai_jupyter serve`` with the same exit codes and
the same visible results: sessions (create/list/ps/info/destroy, ``admin session list``),
``run --rm`` over the execute websocket, vfolders over tus (create/list/upload/ls/download/
delete/delete-trash) and lifecycle events over SSE. The last tests emulate an older manager
(``--api-version v6.20220615`` / ``v5.20191215``): the official CLI still negotiates v6, and the
project's own client works on both.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backendai_jupyter.client import Client, ClientConfig, Finished, Output, parse_endpoints

from .conftest import IMAGE, Endpoint, OfficialCLI, official_cli_release, start_endpoint

pytestmark = pytest.mark.cluster

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def cli_24(bai: OfficialCLI) -> bool:
    """The 24.03 LTS CLI (the 24.3.11 cluster's venv): no priority column, no ``events --wait``,
    no ``vfolder upload --dst-dir``."""
    return official_cli_release(bai.exe)[:1] == (24,)


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result.stdout + result.stderr


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _wait_until_blocked(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait for a streaming CLI to finish starting: its CPU time stops growing (it then sits on
    the open SSE response). The CLI prints nothing before the first event."""
    deadline = time.monotonic() + timeout
    time.sleep(1.0)
    last, quiet = -1, 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            ticks = _cpu_ticks(proc.pid)
        except OSError:
            return
        quiet = quiet + 1 if ticks == last else 0
        if quiet >= 4:
            time.sleep(0.5)
            return
        last = ticks
        time.sleep(0.25)


def _table_rows(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.split()[:1] == [name]]


# -- sessions -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def created(bai: OfficialCLI) -> Iterator[tuple[str, str]]:
    """``session create -t NAME -r cpu=1 -r mem=1g IMAGE``: ``(name, session id)``."""
    name = _name("cf")
    out = _ok(bai("session", "create", "-t", name, "-r", "cpu=1", "-r", "mem=1g", IMAGE))
    m = re.search(rf"Session ID ({UUID_RE.pattern}) is created and ready", out)
    assert m, out
    yield name, m.group(1)
    bai("session", "destroy", name)


def test_session_create_reuses_existing(bai: OfficialCLI, created: tuple[str, str]) -> None:
    name, sid = created
    out = _ok(bai("session", "create", "-t", name, "-r", "cpu=1", IMAGE))
    assert sid in out  # get-or-create answers the running session
    result = bai("session", "create", "--no-reuse", "-t", name, IMAGE)
    assert result.returncode != 0
    assert "already exists" in result.stdout + result.stderr


@pytest.mark.parametrize("command", [("session", "list"), ("ps",), ("admin", "session", "list")])
def test_session_list(bai: OfficialCLI, created: tuple[str, str], command: tuple[str, ...]) -> None:
    name, sid = created
    out = _ok(bai(*command))
    header = out.splitlines()[0].split()
    assert header[:2] == ["Name", "Owner"], out
    # 26.9.6 CLI: v9 + is_admin adds the priority column; the 24.03 CLI has none.
    assert ("Priority" in header) is not cli_24(bai), out
    (row,) = _table_rows(out, name)
    assert sid in row and "INTERACTIVE" in row and "RUNNING" in row and IMAGE in row
    assert row.split()[-1] == "UNDEFINED"


def test_session_info(bai: OfficialCLI, created: tuple[str, str]) -> None:
    name, sid = created
    out = _ok(bai("session", "info", sid))
    fields = dict(
        (m.group(1), m.group(2).strip())
        for m in re.finditer(r"^(Name|Session ID|Status|Image|Occupying Slots)\s{2,}(.*)$", out, re.M)
    )
    assert fields == {
        "Name": name,
        "Session ID": sid,
        "Image": IMAGE,
        "Status": "RUNNING",
        "Occupying Slots": "cpu:1, mem:1.0G",
    }, out
    assert "Cluster Role: main" in out and "Cluster Hostname: main1" in out
    # The 26.9.6 CLI takes UUIDs only, and reports an unknown one as exit 1.
    missing = bai("session", "info", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 1 and "no such compute session" in missing.stdout + missing.stderr
    assert bai("session", "info", name).returncode == 1


def test_run_in_named_session(bai: OfficialCLI, created: tuple[str, str]) -> None:
    name, _ = created
    out = _ok(bai("run", "-t", name, "-c", "x = 6 * 7; print(x)", IMAGE))
    assert "42" in out.splitlines()
    assert "exit code = 0" in out


def test_run_rm_websocket(bai: OfficialCLI) -> None:
    result = bai("run", "--rm", "-c", "print(6*7)", IMAGE)
    out = _ok(result)
    assert "42" in result.stdout.splitlines(), out
    assert "Execution finished. (exit code = 0)" in out
    assert "Cleaned up the session" in out
    m = re.search(r"Session name prefix: (\S+)", out)
    assert m
    assert not _table_rows(_ok(bai("ps")), m.group(1))  # --rm destroyed it


def test_run_reports_exit_code(bai: OfficialCLI) -> None:
    result = bai("run", "--rm", "-c", "import sys; print('bye'); sys.exit(3)", IMAGE)
    out = result.stdout + result.stderr
    assert "bye" in result.stdout.splitlines(), out
    assert "exit code = 3" in out


def test_session_events_and_destroy(bai: OfficialCLI, tmp_path: Path) -> None:
    name = _name("cfev")
    out = _ok(bai("session", "create", "-t", name, "-r", "cpu=1", IMAGE))
    sid = UUID_RE.search(out)
    assert sid
    log = tmp_path / "events.out"
    # The 24.03 CLI has no --wait: it streams until stopped (here, once the last event is in).
    wait = () if cli_24(bai) else ("--wait", "session_terminated")
    proc = bai.popen("session", "events", name, *wait, out=log)
    try:
        _wait_until_blocked(proc)
        assert proc.poll() is None, log.read_text()
        assert "Done" in _ok(bai("session", "destroy", name))
        if cli_24(bai):
            deadline = time.monotonic() + 60
            while "session_terminated" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.5)
            proc.terminate()
            proc.wait(30)
        else:
            assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line for line in log.read_text().splitlines() if re.match(r"^\w+ \{", line)]
    names = [line.split(" ", 1)[0] for line in lines]
    # A sessionName-filtered 26.9.6 stream carries session_* events only.
    assert names == ["session_terminating", "session_terminated"], log.read_text()
    assert '"reason": "user-requested"' in lines[0] and sid.group(0) in lines[0]
    assert not _table_rows(_ok(bai("ps")), name)
    dead = _ok(bai("ps", "--dead"))
    (row,) = _table_rows(dead, name)
    assert "TERMINATED" in row


def test_session_events_unknown_session(bai: OfficialCLI) -> None:
    result = bai("session", "events", "no-such-session-xyz", timeout=60)
    # The 26.9.6 CLI prints the 404 (the stream cannot be opened) but still exits 0.
    assert "404" in result.stdout + result.stderr
    assert "No SessionRow matches the given key" in result.stdout + result.stderr


# -- vfolders -------------------------------------------------------------------------------------


def test_vfolder_roundtrip(bai: OfficialCLI, tmp_path: Path) -> None:
    host = re.search(r"Default vfolder host: (\S+)", _ok(bai("vfolder", "list-hosts")))
    assert host
    name = _name("cfvf")
    assert "is created" in _ok(bai("vfolder", "create", name, host.group(1)))
    (row,) = _table_rows(_ok(bai("vfolder", "list")), host.group(1))
    assert row.split()[1:3] == [name, "ready"]

    payload = os.urandom(3 * 1024 * 1024 + 123)
    (bai.workdir / "blob.bin").write_bytes(payload)
    assert "Done" in _ok(bai("vfolder", "upload", name, "blob.bin"))
    listing = _ok(bai("vfolder", "ls", name))
    (entry,) = _table_rows(listing, "blob.bin")
    assert entry.split()[1] == str(len(payload))
    # --dst-dir travels only in the storage-proxy URL; the upload's first request fixes it.
    # (The 24.03 CLI has no --dst-dir: it uploads to the folder's root only.)
    (bai.workdir / "small.txt").write_text("small")
    where = () if cli_24(bai) else ("--dst-dir", "nested")
    assert "Done" in _ok(bai("vfolder", "upload", name, "small.txt", *where))
    (entry,) = _table_rows(_ok(bai("vfolder", "ls", name, *where[1:])), "small.txt")
    assert entry.split()[1] == "5"

    dest = tmp_path / "dl"
    dest.mkdir()
    assert "Done" in _ok(bai("vfolder", "download", name, "blob.bin", cwd=dest))
    assert (dest / "blob.bin").read_bytes() == payload

    assert "Deleted" in _ok(bai("vfolder", "delete", name))
    (row,) = _table_rows(_ok(bai("vfolder", "list")), host.group(1))
    assert row.split()[1:3] == [name, "delete-pending"]  # the trash bin, as on 26.9.6
    assert "Delete completed" in _ok(bai("vfolder", "delete-trash", name))
    after = bai("vfolder", "list")
    assert name not in after.stdout + after.stderr
    # The 24.03 CLI reports an empty listing as an error ("NoItems", exit 1).
    assert after.returncode == 0 or (cli_24(bai) and "NoItems" in after.stderr), after
    gone = bai("vfolder", "info", name)
    assert gone.returncode == 1 and "No such virtual folder" in gone.stdout + gone.stderr


# -- older API versions ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint_v6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    ep = start_endpoint(tmp_path_factory.mktemp("local6") / "data", "v6.20220615")
    try:
        yield ep
    finally:
        ep.stop()


def test_official_cli_on_v6_emulation(
    official_cli: Path, endpoint_v6: Endpoint, tmp_path: Path
) -> None:
    bai6 = OfficialCLI(official_cli, endpoint_v6, tmp_path / "work")
    name = _name("cf6")
    out = _ok(bai6("session", "create", "-t", name, "-r", "cpu=1", IMAGE))
    assert "is created and ready" in out
    listing = _ok(bai6("ps"))
    assert "Priority" not in listing.splitlines()[0]  # the CLI negotiated v6 (no priority field)
    assert _table_rows(listing, name)
    run = bai6("run", "--rm", "-c", "print(6*7)", IMAGE)
    assert "42" in _ok(run).split() and "exit code = 0" in run.stdout + run.stderr
    assert "Done" in _ok(bai6("session", "destroy", name))


@pytest.mark.parametrize("version", ["v6.20220615", "v5.20191215"])
async def test_own_client_on_old_versions(tmp_path: Path, version: str) -> None:
    ep = start_endpoint(tmp_path / "data", version)
    try:
        config = ClientConfig(
            endpoints=parse_endpoints(ep.url), access_key=ep.access_key, secret_key=ep.secret_key
        )
        async with Client(config) as client:
            info = await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "1g"})
            assert info.status == "RUNNING"
            assert client.features.version_string == version
            out, code = "", None
            async for ev in client.sessions.execute(info.id, "print(6*7)"):
                if isinstance(ev, Output) and ev.item.kind == "stdout":
                    out += ev.item.data
                elif isinstance(ev, Finished):
                    code = ev.exit_code
            assert (out, code) == ("42\n", 0)
            await client.sessions.destroy(info.id)

            payload = os.urandom(600_000)
            (tmp_path / "up.bin").write_bytes(payload)
            await client.folders.create("conf")
            await client.folders.upload("conf", tmp_path / "up.bin", "d/up.bin")
            got = await client.folders.download("conf", "d/up.bin", tmp_path / "back.bin")
            assert got.read_bytes() == payload
            await client.folders.delete("conf")
    finally:
        ep.stop()
