"""Every non-run command against the local endpoint; ``app`` against a small fake manager."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from backendai_jupyter.magics import BackendAIMagics, CommandError, Table
from backendai_jupyter.workspace import loop as _loop

from .conftest import IMAGE, live_sessions


@pytest.fixture
def session(bai: Any) -> Iterator[str]:
    # Unique names: the local endpoint resolves a reused name to the dead session (see report).
    name = f"cmd-{uuid.uuid4().hex[:8]}"
    table = bai(f"start -q -t {name} -e K=V -r cpu=1 {IMAGE}")
    assert isinstance(table, Table) and table.columns == ("service", "protocol", "ports")
    yield name
    bai(f"rm {name}")


def test_start_ps_rm(bai: Any, magics: BackendAIMagics, capsys: pytest.CaptureFixture[str]) -> None:
    t = bai(f"start -t ps-a {IMAGE}")
    assert "Session ps-a" in t.title and "is ready" in capsys.readouterr().err
    bai(f"start -q -t ps-b --tag mytag {IMAGE}")
    table = bai("ps")
    assert isinstance(table, Table) and {"ps-a", "ps-b"} <= set(table.column("name"))
    assert table.columns[:3] == ("name", "id", "image")
    assert "<table>" in table._repr_html_() and "ps-a" in repr(table)
    ids = bai("ps --id-only --running").column("id")
    assert len(ids) == 2 and "\n" in repr(bai("ps --id-only"))
    detail = bai("ps --detail --all")
    assert "occupied_slots" in detail.columns and "mytag" in detail.column("tag")
    custom = bai("ps -f id,status,last_updated")
    assert custom.columns == ("id", "status", "status_changed")
    assert set(custom.column("status")) == {"RUNNING"}
    bai("rm ps-a ps-b")
    assert live_sessions(magics) == []
    dead = bai("ps --dead --all -f name,status")
    assert {"ps-a", "ps-b"} <= set(dead.column("name"))
    with pytest.raises(CommandError, match="no-such-session"):
        bai("rm no-such-session")


def test_var_expansion_outside_run(ip: Any, bai: Any, session: str) -> None:
    ip.user_ns["target"] = session
    assert bai("ps -f name,status").column("name") == [session]
    logs_before = bai("logs $target")
    assert logs_before is None


def test_events_until_terminated(bai: Any, magics: BackendAIMagics,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    bai(f"start -q -t ev-sess {IMAGE}")
    client = magics.client

    async def destroy_soon() -> None:
        await asyncio.sleep(1.0)
        await client.sessions.destroy("ev-sess")

    fut = _loop.submit(destroy_soon())
    bai("events ev-sess --timeout 30")
    fut.result(10)
    out = capsys.readouterr().out
    assert "session_terminated" in out
    with pytest.raises(CommandError, match="404"):
        bai("events ev-sess --timeout 5")  # the session is gone


def test_events_timeout_and_count(bai: Any, session: str) -> None:
    bai(f"events {session} --timeout 0.5")  # no event comes: returns after the timeout
    bai(f"events {session} -n 1 --timeout 0.5")


def test_logs_upload_download(bai: Any, session: str, workdir: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    bai(f"logs {session}")
    (workdir / "up.txt").write_text("payload\n")
    bai(f"upload {session} up.txt")
    res = bai(f"run -q -t {session} -c 'print(open(\"up.txt\").read().strip())' {IMAGE}")
    assert res.stdout == "payload\n"
    bai(f"download {session} up.txt --dest out")
    assert (workdir / "out" / "up.txt").read_text() == "payload\n"
    assert "Downloaded" in capsys.readouterr().err


def test_vfolder_commands(bai: Any, workdir: Path) -> None:
    hosts = bai("vfolder list-hosts")
    assert isinstance(hosts, Table) and hosts.rows and "Default host" in hosts.title
    host = hosts.column("host")[0]
    bai(f"vfolder create vf-one {host} --permission rw")
    try:
        assert "vf-one" in bai("vfolder list").column("name")
        (workdir / "a.txt").write_text("A")
        (workdir / "tree").mkdir()
        (workdir / "tree" / "b.txt").write_text("B")
        bai("vfolder upload vf-one a.txt tree")
        bai("vfolder mkdir vf-one sub/deeper -p")
        bai("vfolder mkdir vf-one sub --exist-ok")
        names = bai("vfolder ls vf-one").column("name")
        assert {"a.txt", "tree", "sub"} <= set(names)
        assert bai("vfolder ls vf-one tree").column("name") == ["b.txt"]
        bai("vfolder mv vf-one a.txt sub/a2.txt")
        assert "a2.txt" in bai("vfolder ls vf-one sub").column("name")
        bai("vfolder download vf-one sub/a2.txt tree --dest got")
        assert (workdir / "got" / "a2.txt").read_text() == "A"
        assert (workdir / "got" / "tree" / "b.txt").read_text() == "B"
        bai("vfolder rm vf-one tree -r")
        assert "tree" not in bai("vfolder ls vf-one").column("name")
        bai("vfolder rename vf-one vf-two")
        assert "vf-two" in bai("vfolder list").column("name")
        bai("vfolder invite vf-two someone@example.invalid -p ro")
    finally:
        for name in ("vf-one", "vf-two"):
            try:
                bai(f"vfolder delete {name} --forever")
            except CommandError:
                pass
    assert not {"vf-one", "vf-two"} & set(bai("vfolder list").column("name"))


TEMPLATE = """\
api_version: v1
kind: taskTemplate
metadata:
  name: {name}
spec:
  kernel:
    image: python
    environ:
      FROM_TEMPLATE: "yes"
  resources:
    cpu: '1'
"""


def test_sesstpl_and_start_template(bai: Any, magics: BackendAIMagics, workdir: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    tid = bai("sesstpl create", cell=TEMPLATE.format(name="tpl-one"))
    assert isinstance(tid, str) and tid
    try:
        listing = bai("sesstpl list")
        assert tid in listing.column("id")
        capsys.readouterr()
        bai(f"sesstpl get {tid}")
        assert "tpl-one" in capsys.readouterr().out
        (workdir / "t.yaml").write_text(TEMPLATE.format(name="tpl-two"))
        bai(f"sesstpl update {tid} -f t.yaml")
        bai(f"sesstpl get {tid} --format json")
        assert "tpl-two" in capsys.readouterr().out
        bai(f"start-template {tid} -t from-tpl")
        assert "from-tpl" in live_sessions(magics)
        res = bai(f"run -q -t from-tpl -c 'import os; print(os.environ.get(\"FROM_TEMPLATE\"))' "
                  f"{IMAGE}")
        assert res.stdout == "yes\n"
        bai("rm from-tpl")
    finally:
        bai(f"sesstpl delete {tid}")
    assert tid not in bai("sesstpl list").column("id")


def test_dotfile_commands(bai: Any, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bai("dotfile create .magicrc -p 600", cell="export A=1\n")
    try:
        listing = bai("dotfile list")
        assert ".magicrc" in listing.column("path")
        capsys.readouterr()
        bai("dotfile get .magicrc")
        assert capsys.readouterr().out == "export A=1\n"
        (workdir / "rc").write_text("export A=2\n")
        bai("dotfile update .magicrc -f rc")
        bai("dotfile get .magicrc")
        assert capsys.readouterr().out == "export A=2\n"
        bai("dotfile update .magicrc --data 'export A=3'")
    finally:
        bai("dotfile delete .magicrc")
    assert ".magicrc" not in bai("dotfile list").column("path")


def test_config_show_set_reset(bai: Any, local_endpoint: dict[str, str]) -> None:
    table = bai("config")
    shown = dict(table.rows)
    assert shown["endpoint"] == local_endpoint["BACKEND_ENDPOINT"]
    assert shown["secret_key"] == "(set)"
    secret = local_endpoint["BACKEND_SECRET_KEY"]
    assert secret not in repr(table) and secret not in table._repr_html_()
    bai("config set domain=other group=proj")
    assert dict(bai("config show").rows)["group"] == "proj"
    bai("config reset")
    assert dict(bai("config").rows)["group"] == "default"


def test_config_set_secret_prompts(bai: Any, monkeypatch: pytest.MonkeyPatch,
                                   local_endpoint: dict[str, str]) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt="": local_endpoint["BACKEND_SECRET_KEY"])
    bai("config set secret_key")
    assert bai("ps --id-only") is not None  # still authenticates


def test_login_logout_session_mode(bai: Any, monkeypatch: pytest.MonkeyPatch,
                                   local_endpoint: dict[str, str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "wrong")
    with pytest.raises(CommandError, match="login failed"):
        bai(f"login -u {local_endpoint['BACKEND_ACCESS_KEY']}")
    monkeypatch.setattr("getpass.getpass", lambda prompt="": local_endpoint["BACKEND_SECRET_KEY"])
    monkeypatch.setattr("builtins.input", lambda prompt="": local_endpoint["BACKEND_ACCESS_KEY"])
    bai(f"login --endpoint {local_endpoint['BACKEND_ENDPOINT']}")
    assert "Login succeeded" in capsys.readouterr().err
    assert dict(bai("config").rows)["endpoint_type"] == "session"
    assert isinstance(bai("ps"), Table)  # through /func/ with the login cookie
    bai("logout")
    assert "Logout done" in capsys.readouterr().err
    with pytest.raises(CommandError):
        bai("ps")


# -- app: a fake manager with /stream/session/{id}/apps and an echoing tcpproxy ----------------


async def _fake_manager() -> AsyncIterator[str]:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"version": "v9.20250722", "manager": "26.9.6"})

    async def apps(request: web.Request) -> web.Response:
        return web.json_response([{"name": "echo", "protocol": "tcp", "ports": [7]}])

    async def tcpproxy(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.query["app"] == "echo"
        async for msg in ws:
            await ws.send_bytes(b"echo:" + msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/stream/session/{s}/apps", apps)
    app.router.add_get("/stream/session/{s}/tcpproxy", tcpproxy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def fake_manager() -> Iterator[str]:
    gen = _fake_manager()
    url = _loop.run(gen.__anext__())
    yield url
    with pytest.raises(StopAsyncIteration):
        _loop.run(gen.__anext__())


def test_app_proxy(bai: Any, fake_manager: str, capsys: pytest.CaptureFixture[str]) -> None:
    bai(f"config set endpoint={fake_manager}")
    proxy = bai("app mysess echo -b 0")
    assert proxy.port > 0 and proxy.url == f"tcp://127.0.0.1:{proxy.port}"
    assert "is available at" in capsys.readouterr().err
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"ping")
        assert sock.recv(100) == b"echo:ping"
    assert bai("app --list").column("port") == [proxy.port]
    with pytest.raises(CommandError, match="has no service 'jupyter'"):
        bai("app mysess jupyter -b 0")
    bai(f"app --stop {proxy.port}")
    assert len(bai("app --list")) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
    proxy2 = bai("app mysess echo -b 127.0.0.1:0")
    bai("app --stop all")
    assert proxy2.server is not None and not proxy2.server.is_serving()


def test_app_against_local_endpoint(bai: Any, session: str) -> None:
    """The local endpoint's services (issue #6): Jupyter through the proxy, a link, --stop."""
    with pytest.raises(CommandError, match="has no service 'nope'"):
        bai(f"app {session} nope -b 0")
    proxy = bai(f"app {session} jupyter -b 0")
    assert proxy.url == f"http://127.0.0.1:{proxy.port}"
    assert f'href="{proxy.url}"' in proxy._repr_html_()
    import urllib.request

    with urllib.request.urlopen(proxy.url + "/api/status", timeout=120) as resp:
        assert resp.status == 200
    again = bai(f"app {session} jupyter -b {proxy.port}")  # a second command replaces it
    assert again.port == proxy.port and not proxy.running and again.running
    bai("app --stop all")
    assert not again.running


def test_json_helpers_roundtrip() -> None:
    table = Table.from_records([{"a": {"x": 1}, "b": None}], ("a", "b"))
    assert json.loads(table.rows[0][0] and json.dumps(table.rows[0][0])) == {"x": 1}
    assert table.records() == [{"a": {"x": 1}, "b": None}]


def test_doctor(bai: Any, magics: BackendAIMagics, capsys: pytest.CaptureFixture[str]) -> None:
    """``%backendai doctor`` checks the workspace's own endpoint (the local one here)."""
    assert bai("doctor") is None
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("✓ endpoint: http://127.0.0.1:")
    assert "-local, API v" in out and "✓ keys: " in out and "sandbox" in out
    assert out.rstrip().endswith("→ a first cell should run")
    assert magics.context.client_config.secret_key not in out
