"""Interactive apps on the local endpoint (issue #6): service ports, the tcpproxy, the pty
websocket, start-service, our :class:`AppProxy` and services dying with their session."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from backendai_jupyter.client import BackendAIError, Client, Output
from backendai_jupyter.client.apps import AppProxy
from backendai_jupyter.server.agent.services import SERVICES

from .conftest import IMAGE, Local

pytestmark = pytest.mark.timeout(180)


def _descendants(pid: int) -> set[int]:
    out: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat_ = Path(f"/proc/{entry}/stat").read_text()
                if int(stat_[stat_.rfind(")") + 2 :].split()[1]) in ({pid} | out):
                    out.add(int(entry))
    return out


def _fds(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PREOPEN = _free_port()


@pytest.fixture(scope="module")
async def session(client: Client) -> AsyncIterator[str]:
    info = await client.sessions.create(
        IMAGE, name=f"app-{uuid.uuid4().hex[:6]}", preopen_ports=[PREOPEN],
        resources={"cpu": "1", "mem": "2g"},
    )
    assert info.status == "RUNNING", info
    names = {p.name for p in info.service_ports}
    assert {"jupyter", "jupyterlab", str(PREOPEN)} <= names, info.service_ports
    yield info.name
    with contextlib.suppress(BackendAIError):
        await client.sessions.destroy(info.name)


#: A ``preopen`` service is the session's own program, listening on its own loopback (its
#: network namespace): this one echoes, or — after a 4-byte command — reads an upload once
#: ``/tmp/go`` exists (its digest into ``/tmp/digest``) or sends a 64 MiB download.
SERVICE = r"""
import hashlib, os, socket, threading, time
BLOCK = bytes(range(256)) * 4096
def handle(c):
    head = b""
    while len(head) < 4:
        d = c.recv(4 - len(head))
        if not d:
            c.close(); return
        head += d
    if head == b"BPU!":
        while not os.path.exists("/tmp/go"):
            time.sleep(0.05)
        h, n = hashlib.sha256(), 0
        while n < 64 * len(BLOCK) and (d := c.recv(1 << 20)):
            h.update(d); n += len(d)
        open("/tmp/digest", "w").write(h.hexdigest())
    elif head == b"BPD!":
        for _ in range(64):
            c.sendall(BLOCK)
    else:
        d = head
        while d:
            c.sendall(d); d = c.recv(65536)
    c.close()
def serve():
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", PORT)); srv.listen()
    while True:
        threading.Thread(target=handle, args=(srv.accept()[0],), daemon=True).start()
if "_bjup_service" not in globals():
    _bjup_service = threading.Thread(target=serve, daemon=True); _bjup_service.start()
time.sleep(0.3)
print("serving")
"""


async def _cell(client: Client, session: str, code: str) -> str:
    text = ""
    async for ev in client.sessions.execute(session, code, transport="rest"):
        if isinstance(ev, Output) and ev.item.kind in ("stdout", "stderr"):
            text += ev.item.data
    return text


async def _start_service_in_session(client: Client, session: str) -> None:
    assert "serving" in await _cell(client, session, f"PORT = {PREOPEN}\n" + SERVICE)


async def test_apps_listing_shape(client: Client, session: str) -> None:
    raw = await client.http.json("GET", f"/stream/session/{session}/apps")
    by_name = {a["name"]: a for a in raw}
    assert by_name["jupyter"] == {"name": "jupyter", "protocol": "http", "ports": [8081]}
    assert by_name[str(PREOPEN)] == {"name": str(PREOPEN), "protocol": "preopen",
                                     "ports": [PREOPEN]}
    for item in raw:
        assert set(item) <= {"name", "protocol", "ports", "url_template", "allowed_arguments",
                             "allowed_envs"}
    assert [a.name for a in await client.sessions.apps(session)] == [a["name"] for a in raw]
    info = await client.sessions.info(session)
    assert info["servicePorts"] == raw
    again = await client.sessions.create(IMAGE, name=session)  # get-or-create answer
    assert not again.created and {p.name for p in again.service_ports} == set(by_name)


async def test_bad_preopen_ports_rejected(client: Client) -> None:
    for bad in ([2000], [80], [70000]):
        with pytest.raises(BackendAIError, match="400"):
            await client.sessions.create(IMAGE, name=f"bad-{uuid.uuid4().hex[:6]}",
                                         preopen_ports=bad)


async def test_unknown_app_and_bad_port(local: Local, client: Client, session: str) -> None:
    with pytest.raises(BackendAIError, match="404"):
        await client.http.ws_connect(f"/stream/session/{session}/tcpproxy",
                                     params={"app": "nope"})
    # the same handler without the upgrade shows the problem body
    with pytest.raises(BackendAIError) as e:
        await client.http.json("GET", f"/stream/session/{session}/tcpproxy",
                               params={"app": "nope"})
    assert "404" in str(e.value) and "No such app service" in str(e.value)
    with pytest.raises(BackendAIError, match="400"):
        await client.http.ws_connect(f"/stream/session/{session}/tcpproxy",
                                     params={"app": "jupyter", "port": "1234"})
    resp = await client.http.request("GET", f"/stream/session/{session}/apps")
    assert resp.status == 200
    with pytest.raises(BackendAIError, match="404"):
        await client.http.json("GET", "/stream/session/no-such-session/apps")


async def test_preopen_relay_and_refused(client: Client, session: str) -> None:
    # Nothing listens yet: the manager closes the websocket with 1013 (TRY_AGAIN_LATER).
    ws = await client.http.ws_connect(f"/stream/session/{session}/tcpproxy",
                                      params={"app": str(PREOPEN)})
    msg = await ws.receive(timeout=10)
    assert msg.kind == "closed" and msg.close_code == 1013
    async with AppProxy(client, session, str(PREOPEN), port=0) as proxy:
        assert proxy.url == f"http://127.0.0.1:{proxy.port}"
        r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
        w.write(b"GET / HTTP/1.0\r\n\r\n")
        reply = await asyncio.wait_for(r.read(), 10)
        assert reply.startswith(b"HTTP/1.1 503 Service Unavailable") and b"1013" in reply
        w.close()
        await _start_service_in_session(client, session)
        try:
            r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
            payload = os.urandom(3 * 1024 * 1024 + 17)
            w.write(payload)
            got = await asyncio.wait_for(r.readexactly(len(payload)), 30)
            assert got == payload
            w.close()
            # several connections at once, each over its own websocket
            async def one(i: int) -> bytes:
                rr, ww = await asyncio.open_connection("127.0.0.1", proxy.port)
                ww.write(b"conn %d" % i)
                data = await asyncio.wait_for(rr.readexactly(len(b"conn %d" % i)), 10)
                ww.close()
                return data
            assert await asyncio.gather(*(one(i) for i in range(8))) == [
                b"conn %d" % i for i in range(8)]
            assert proxy.connections >= 10
        finally:
            pass
    assert not proxy.running


async def test_backpressure_bounds_the_proxy(client: Client, session: str) -> None:
    """64 MiB to (and from) an end that does not read: the proxy's buffers (client and server
    side, both in this process; traced by tracemalloc) stay bounded, and the bytes arrive intact
    once the slow end reads. Kernel socket buffers are outside the proxy and not counted."""
    size, mib = 64 * 1024 * 1024, 1024 * 1024
    block = bytes(range(256)) * 4096
    digest = hashlib.sha256(block * 64).hexdigest()

    async def write_all(w: asyncio.StreamWriter) -> None:
        for _ in range(size // mib):  # this end buffers at most one block itself
            w.write(block)
            await w.drain()

    async def read_all(r: asyncio.StreamReader) -> str:
        h = hashlib.sha256()
        for _ in range(size // mib):
            h.update(await r.readexactly(mib))
        return h.hexdigest()

    def stalled_peak() -> int:
        return tracemalloc.get_traced_memory()[1]

    await _start_service_in_session(client, session)
    await _cell(client, session, "import os\nfor f in ('/tmp/go', '/tmp/digest'):\n"
                                 "    os.path.exists(f) and os.unlink(f)")
    tracemalloc.start()
    try:
        async with AppProxy(client, session, str(PREOPEN), port=0) as proxy:
            r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
            w.write(b"BPU!")
            sender = asyncio.create_task(write_all(w))
            await asyncio.sleep(3)  # the service does not read
            assert 0 < proxy.bytes_up < size and not sender.done()
            assert stalled_peak() < 16 * mib, stalled_peak()
            await _cell(client, session, "open('/tmp/go', 'w').close()")
            await asyncio.wait_for(sender, 60)
            code = ("import os, time\nwhile not os.path.exists('/tmp/digest'): time.sleep(0.1)"
                    "\ntime.sleep(0.2); print(open('/tmp/digest').read())")
            assert (await asyncio.wait_for(_cell(client, session, code), 60)).strip() == digest
            w.close()

            r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
            w.write(b"BPD!")
            tracemalloc.reset_peak()
            await asyncio.sleep(3)  # nobody reads
            assert 0 < proxy.bytes_down < size
            assert stalled_peak() < 16 * mib, stalled_peak()
            assert await asyncio.wait_for(read_all(r), 60) == digest
            w.close()
    finally:
        tracemalloc.stop()


async def _run_cell(http: aiohttp.ClientSession, base: str, code: str) -> str:
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
    async with http.delete(f"{base}/api/kernels/{kid}") as resp:
        assert resp.status == 204
    return out


async def test_jupyter_through_app_proxy(local: Local, client: Client, session: str) -> None:
    async with AppProxy(client, session, "jupyter", port=0) as proxy:
        base = proxy.url
        assert base.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/", timeout=aiohttp.ClientTimeout(total=120)) as resp:
                assert resp.status == 200
                assert "Jupyter" in await resp.text()
            out = await asyncio.wait_for(_run_cell(http, base, "import os; print(6*7, os.getcwd())"), 90)
    assert out.split()[0] == "42"
    sess = local.app[SERVICES].sessions
    assert any(s.sess.name == session for s in sess.values())
    entry = next(s for s in sess.values() if s.sess.name == session)
    sandboxed = entry.sess.process is not None and "sandbox" in entry.sess.process.limits
    assert out.split()[1] == ("/home/work" if sandboxed else str(entry.sess.workdir))


async def test_jupyter_checks_origin_and_host(client: Client, session: str) -> None:
    """Behind the proxy, Jupyter still refuses a cross-site page and a foreign Host."""
    async with AppProxy(client, session, "jupyter", port=0) as proxy:
        base = proxy.url
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/api/kernels", json={}) as resp:
                assert resp.status == 201, await resp.text()
                kid = (await resp.json())["id"]
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await http.ws_connect(f"{base}/api/kernels/{kid}/channels",
                                      headers={"Origin": "http://evil.example"})
            assert e.value.status == 403
            # A cross-origin request is not granted CORS (no Access-Control-Allow-Origin).
            async with http.get(f"{base}/api/kernels",
                                headers={"Origin": "http://evil.example"}) as resp:
                assert "Access-Control-Allow-Origin" not in resp.headers
            async with http.get(f"{base}/api/status",
                                headers={"Host": "evil.example"}) as resp:
                assert resp.status == 403
            async with http.delete(f"{base}/api/kernels/{kid}"):
                pass


def _service_address(local: Local, session: str, app: str) -> object:
    entry = next(s for s in local.app[SERVICES].sessions.values() if s.sess.name == session)
    return entry.running[app].address


async def test_start_service(local: Local, client: Client, session: str) -> None:
    data = await client.http.json("POST", f"/session/{session}/start-service",
                                  json={"app": "jupyter"})
    assert set(data) >= {"token", "wsproxy_addr"}
    # The answer names the endpoint (the proxy), never the service itself.
    assert data["wsproxy_addr"] == local.url and "/tcpproxy?app=jupyter" in data["url"]
    address = _service_address(local, session, "jupyter")
    if isinstance(address, int):
        # The session's own network: the service listens on its own port there (the
        # proxy reaches it through the session; test_jupyter_not_reachable_without_the_proxy).
        assert address == 8081
    else:
        assert stat.S_ISSOCK(os.stat(address).st_mode)
        # A private socket: mode 0600 in a 0700 directory.
        assert stat.S_IMODE(os.stat(address).st_mode) == 0o600
    with pytest.raises(BackendAIError, match="404"):
        await client.http.json("POST", f"/session/{session}/start-service", json={"app": "x"})


async def test_plain_get_does_not_start_a_service(local: Local, client: Client) -> None:
    info = await client.sessions.create(IMAGE, name=f"get-{uuid.uuid4().hex[:6]}")
    try:
        with pytest.raises(BackendAIError, match="400"):
            await client.http.json("GET", f"/stream/session/{info.name}/tcpproxy",
                                   params={"app": "jupyter"})
        entry = next(s for s in local.app[SERVICES].sessions.values() if s.sess.id == info.id)
        assert entry.running == {}
    finally:
        await client.sessions.destroy(info.name)


async def test_jupyter_not_reachable_without_the_proxy(local: Local, client: Client,
                                                       session: str) -> None:
    await client.http.json("POST", f"/session/{session}/start-service", json={"app": "jupyter"})
    entry = next(s for s in local.app[SERVICES].sessions.values() if s.sess.name == session)
    proc = entry.running["jupyter"].proc
    assert proc is not None
    # No TCP port of the service's own: nothing it (or its children) listens on is TCP.
    pids = {proc.pid} | _descendants(proc.pid)
    inodes = {os.stat(f"/proc/{p}/fd/{fd}").st_ino
              for p in pids for fd in _fds(p) if os.readlink(f"/proc/{p}/fd/{fd}")
              .startswith("socket:")}
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A":  # LISTEN
                listening.add(int(cols[9]))
    assert not inodes & listening


async def test_pty_echo(client: Client, session: str) -> None:
    ws = await client.http.ws_connect(f"/stream/session/{session}/pty")
    try:
        await ws.send_json({"type": "resize", "rows": 30, "cols": 100})
        await ws.send_json({"type": "ping"})
        cmd = b"echo pty-$((6*7)); stty size; pwd\n"
        await ws.send_json({"type": "stdin", "chars": base64.b64encode(cmd).decode()})
        text = ""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while "pty-42" not in text or "30 100" not in text:
            msg = await ws.receive(timeout=max(0.1, deadline - loop.time()))
            assert msg.kind != "closed", text
            frame = msg.json()
            assert frame["type"] == "out"
            text += base64.b64decode(frame["data"]).decode(errors="replace")
        assert "pty-42" in text
    finally:
        await ws.close()


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client")
async def test_sshd(local: Local, client: Client, session: str, tmp_path: Path) -> None:
    if "sshd" not in {a.name for a in await client.sessions.apps(session)}:
        pytest.skip("no sshd on this machine (the service is not advertised)")
    async with AppProxy(client, session, "sshd", port=0) as proxy:
        assert proxy.url.startswith("tcp://")
        sess = next(s.sess for s in local.app[SERVICES].sessions.values() if s.sess.name == session)
        await client.http.json("POST", f"/session/{session}/start-service", json={"app": "sshd"})
        key = sess.workdir / "id_container"
        assert key.exists()
        argv = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-i", str(key), "-p", str(proxy.port), "work@127.0.0.1",
                "echo ssh-$((6*7))"]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert b"ssh-42" in out, err


async def test_services_die_with_session(local: Local, client: Client) -> None:
    info = await client.sessions.create(IMAGE, name=f"die-{uuid.uuid4().hex[:6]}")
    await client.http.json("POST", f"/session/{info.name}/start-service", json={"app": "jupyter"})
    address = _service_address(local, info.name, "jupyter")
    sess = next(s.sess for s in local.app[SERVICES].sessions.values() if s.sess.id == info.id)
    assert sess.process is not None
    pids = {p.pid for p in sess.process.children if p.returncode is None}
    assert pids
    await client.sessions.destroy(info.name)
    assert isinstance(address, int) or not os.path.exists(address)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    # no apps for a dead session
    with pytest.raises(BackendAIError, match="404"):
        await client.sessions.apps(info.name)
