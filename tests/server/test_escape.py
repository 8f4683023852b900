"""Issue 19: an attacker with code in a session, on the local endpoint. Each finding of the issue
is an attack here that must fail: root through the session's own sshd, host files written
through planted symlinks, a racing symlink swap during a download, the host's loopback (the
endpoint, its rate limits), fork/thread bombs, filling the disk, ``mount_map`` onto reserved
paths, absurd upload sizes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from backendai_jupyter.client import BackendAIError, Client
from backendai_jupyter.client.apps import AppProxy
from backendai_jupyter.server.agent import layers
from backendai_jupyter.server.agent.diskquota import probe_home_quota
from backendai_jupyter.server.agent.layers import (
    LAYERS_OFF_VAR,
    probe_bwrap,
    probe_net,
    probe_userns,
)
from backendai_jupyter.server.manager.scheduler import SCHEDULER
from backendai_jupyter.server.manager.state import CONFIG, REGISTRY

from .conftest import IMAGE, Local
from .test_sessions import _out

needs_layers = pytest.mark.skipif(
    probe_bwrap() is not None or probe_userns() is not None or probe_net() is not None,
    reason=f"sandbox layers missing: {probe_bwrap() or probe_userns() or probe_net()}",
)
pytestmark = [needs_layers, pytest.mark.timeout(240)]


async def _json_out(client: Client, sid: str, code: str) -> Any:
    text, _ = await _out(client, sid, code)
    lines = [x for x in text.splitlines() if x.startswith(("{", "["))]
    assert lines, text
    return json.loads(lines[-1])


async def _close(local: Local) -> None:
    """Shut the endpoint down (sessions, their mounts and cgroups), also after a failure."""
    for c in local.clients:
        await c.close()
    await local.server.close()


@pytest.fixture
async def strict(make_local: Any) -> AsyncIterator[Local]:
    local: Local = await make_local(sandbox="strict", session_limits={"pids": "128"})
    try:
        yield local
    finally:
        await _close(local)


# -- root through the session's own sshd --------------------------------------------------------

SSH_AS_ROOT = r"""
import json, subprocess
tries = {}
for user in ("root", "work"):
    for port in (2200, 22):
        p = subprocess.run(["ssh", "-i", "/home/work/id_container", "-p", str(port),
                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", f"{user}@127.0.0.1",
                            "grep CapEff /proc/self/status"],
                           capture_output=True, text=True, timeout=30)
        tries[f"{user}@{port}"] = [p.returncode, p.stdout.strip()]
print(json.dumps(tries))
"""


@pytest.mark.skipif(shutil.which("sshd") is None and not Path("/usr/sbin/sshd").exists(),
                    reason="no sshd")
async def test_sshd_gives_no_root_and_no_capability(strict: Local, tmp_path: Path) -> None:
    client = strict.client()
    info = await client.sessions.create(IMAGE)
    await client.http.json("POST", f"/session/{info.id}/start-service", json={"app": "sshd"})
    tries = await _json_out(client, info.id, SSH_AS_ROOT)
    assert tries["root@2200"][0] != 0 and "CapEff" not in tries["root@2200"][1]
    assert tries["root@22"][0] != 0 and tries["work@22"][0] != 0
    # work@2200 from inside is the session's own user: no capability
    if tries["work@2200"][0] == 0:
        assert tries["work@2200"][1].split()[-1] == "0000000000000000"
    # From the user's side, through the authenticated proxy: a login as work, nothing more.
    key = tmp_path / "id"
    sess = strict.app[REGISTRY].sessions[info.id]
    key.write_bytes((sess.workdir / "id_container").read_bytes())
    key.chmod(0o600)
    async with AppProxy(client, info.id, "sshd", port=0) as proxy:
        base = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-i", str(key), "-p", str(proxy.port)]
        cmd = ("id -u; grep CapEff /proc/self/status; umount /home/work 2>&1; echo rc=$?;"
               " mount -o remount,rw / 2>&1; echo rc=$?")
        out = await _ssh([*base, "work@127.0.0.1", cmd])
        assert out.splitlines()[0] == "1000", out
        assert "CapEff:\t0000000000000000" in out and "rc=0" not in out
        with pytest.raises(AssertionError):
            await _ssh([*base, "root@127.0.0.1", "id -u"])
    await client.sessions.destroy(info.id)
    await client.close()


async def _ssh(argv: list[str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    return out.decode()


# -- host files through planted symlinks ----------------------------------------------------------

PLANT = r"""
import json, os
out = {"uid": os.getuid(), "gid": os.getgid()}
targets = {}
for d in ("/home/config", "/home/config/ssh", "/home"):
    for name in ("jupyter.log", "sshd.log", "sshd_config", "authorized_keys", "kernel.json"):
        try:
            os.symlink(CANARY, os.path.join(d, name))
            targets[f"{d}/{name}"] = "planted"
        except OSError as e:
            targets[f"{d}/{name}"] = e.errno
for name in ("id_container", "id_container.pub"):  # where the endpoint copies the key pair
    os.symlink(CANARY, "/home/work/" + name)
out["targets"] = targets
out["data_dir"] = os.listdir(DATA) if os.path.isdir(DATA) else None
out["shadow"] = os.access("/etc/shadow", os.R_OK)
out["passwd_work"] = any(l.startswith("work:x:1000:1000:") for l in open("/etc/passwd"))
print(json.dumps(out))
"""


async def test_no_host_path_to_redirect(strict: Local, tmp_path: Path) -> None:
    client = strict.client()
    canary = tmp_path / "canary"
    info = await client.sessions.create(IMAGE)
    data = str(strict.app[CONFIG].data_dir)
    code = f"CANARY = {str(canary)!r}; DATA = {data!r}\n" + PLANT
    got = await _json_out(client, info.id, code)
    assert got["uid"] == got["gid"] == 1000 and got["passwd_work"]
    assert "planted" not in got["targets"].values(), got["targets"]
    assert got["data_dir"] in (None, []) and not got["shadow"]
    # Starting the services writes logs and configuration where the session cannot reach.
    for app in ("jupyter", "sshd"):
        try:
            await client.http.json("POST", f"/session/{info.id}/start-service", json={"app": app})
        except BackendAIError as e:
            assert "404" in str(e)  # not installed here
    assert not canary.exists()
    sess = strict.app[REGISTRY].sessions[info.id]
    if (sess.workdir.parent / f"{info.id}.runtime" / "ssh" / "id_container").exists():
        assert not (sess.workdir / "id_container").is_symlink()  # replaced, never followed
    await client.sessions.destroy(info.id)
    await client.close()


FLIP = r"""
import os, threading, time
os.makedirs("d", exist_ok=True)
open("d/keypair.json", "w").write("harmless")
def flip():
    for _ in range(20000):
        os.rename("d", "parked"); os.symlink(TARGET, "d"); os.unlink("d"); os.rename("parked", "d")
threading.Thread(target=flip, daemon=True).start()
"""


async def test_racing_symlink_swap_during_download(strict: Local, tmp_path: Path) -> None:
    client = strict.client()
    info = await client.sessions.create(IMAGE)
    sess = strict.app[REGISTRY].sessions[info.id]
    secret = sess.workdir.parent / "host-secret"
    secret.mkdir()
    (secret / "keypair.json").write_text("SECRET-KEY")
    # The symlink points at the host path: resolved by the endpoint, never by the session.
    await _out(client, info.id, f"TARGET = {str(secret)!r}\n" + FLIP)
    for i in range(40):
        dest = tmp_path / f"dl{i}"
        try:
            files = await client.sessions.download(info.id, ["d/keypair.json"], dest)
        except BackendAIError:
            continue
        for f in files:
            assert "SECRET-KEY" not in Path(f).read_text(errors="replace")
        with pytest.raises(BackendAIError) as e:
            await client.sessions.download(info.id, ["/home/work/../../etc/shadow"], dest)
        assert str(strict.app[CONFIG].data_dir) not in str(e.value)
    await client.sessions.destroy(info.id)
    await client.close()


# -- the host's loopback: the endpoint and its rate limits ---------------------------------------

SCAN = r"""
import json, socket
from concurrent.futures import ThreadPoolExecutor
def reach(target):
    try:
        socket.create_connection(target, timeout=2).close()
        return True
    except OSError:
        return False
targets = [(h, p) for h in ("127.0.0.1", "10.0.2.2") for p in PORTS]
with ThreadPoolExecutor(64) as pool:
    print(json.dumps({f"{h}:{p}": ok for (h, p), ok in zip(targets, pool.map(reach, targets))}))
"""

LOGINS = r"""
import urllib.request
failed = 0
for _ in range(30):
    try:
        urllib.request.urlopen(URL + "/server/login", data=b"{}", timeout=2)
    except Exception:
        failed += 1
print(failed)
"""


def _host_listening_ports() -> list[int]:
    """TCP ports the host listens on (loopback or any address): what a cell would scan."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A":  # LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return sorted(ports)[:500]


async def test_loopback_scan_and_rate_limits(strict: Local) -> None:
    client = strict.client()
    a = await client.sessions.create(IMAGE)
    b = await client.sessions.create(IMAGE)
    await client.http.json("POST", f"/session/{b.id}/start-service", json={"app": "jupyter"})
    b_kernel = strict.app[REGISTRY].sessions[b.id].process
    assert b_kernel is not None
    # A root endpoint dials the kernel inside the session's network (no port on the host); an
    # unprivileged one relays from host-loopback ports, which must be out of reach as well.
    assert (b_kernel.context is not None) == (os.geteuid() == 0)
    assert (b_kernel.relay is not None) == (os.geteuid() != 0)
    relayed = [s.sockets[0].getsockname()[1]
               for s in (b_kernel.relay.servers if b_kernel.relay else [])]
    ports = sorted({int(strict.url.rsplit(":", 1)[1]), *relayed, *_host_listening_ports()})
    reach = await _json_out(client, a.id, f"PORTS = {ports!r}\n" + SCAN)
    assert len(reach) == 2 * len(ports) and not any(reach.values()), {
        k: v for k, v in reach.items() if v}
    # Failed logins from a cell never reach the endpoint: the user's own still work.
    text, _ = await _out(client, a.id, f"URL = {strict.url!r}\n" + LOGINS)
    assert text.strip() == "30"
    async with aiohttp.ClientSession() as http, http.get(strict.url + "/") as resp:
        assert resp.status == 200  # the anonymous bucket of 127.0.0.1 is untouched
    assert (await client.sessions.info(a.id))["status"] == "RUNNING"
    for s in (a, b):
        await client.sessions.destroy(s.id)
    await client.close()


# -- limits: PIDs and disk ----------------------------------------------------------------------

BOMB = r"""
import json, os, threading, time
ev = threading.Event(); n = 0; err = None
try:
    while n < 5000:
        threading.Thread(target=ev.wait, daemon=True).start(); n += 1
except RuntimeError as e:
    err = str(e)
forks = 0
try:
    pids = []
    for _ in range(200):
        pid = os.fork()
        if pid == 0:
            time.sleep(5); os._exit(0)
        pids.append(pid); forks += 1
except OSError as e:
    err2 = e.errno
else:
    err2 = None
ev.set()
print(json.dumps({"threads": n, "thread_error": err, "forks": forks, "fork_errno": err2}))
"""


async def test_fork_and_thread_bombs_stop_at_pids_max(strict: Local) -> None:
    client = strict.client()
    info = await client.sessions.create(IMAGE)
    got = await _json_out(client, info.id, BOMB)
    assert got["threads"] < 128 and got["thread_error"], got
    assert got["fork_errno"] == 11, got  # EAGAIN
    # The endpoint and another session are fine.
    other = await client.sessions.create(IMAGE)
    assert (await _out(client, other.id, "print(6*7)"))[0].strip() == "42"
    for s in (info, other):
        await client.sessions.destroy(s.id)
    await client.close()


FILL = r"""
import errno, json, os, shutil
out = {}
for d in ("/tmp", "/home/work"):
    out[d + ":size"] = shutil.disk_usage(d).total
    try:
        with open(os.path.join(d, "fill"), "wb") as f:
            for _ in range(4096):
                f.write(b"x" * 2**20)
        out[d] = "filled"
    except OSError as e:
        out[d] = errno.errorcode[e.errno]
    finally:
        try: os.unlink(os.path.join(d, "fill"))
        except OSError: pass
print(json.dumps(out))
"""


async def test_disk_fill_is_enospc_for_that_session(make_local: Any) -> None:
    local: Local = await make_local(sandbox="strict",
                                    session_limits={"tmp": "64m", "disk": "96m"})
    try:
        client = local.client()
        info = await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "1g"})
        got = await _json_out(client, info.id, FILL)
        assert got["/tmp"] == "ENOSPC" and got["/tmp:size"] == 64 * 2**20, got
        if probe_home_quota() is None:
            assert got["/home/work"] == "ENOSPC" and got["/home/work:size"] <= 96 * 2**20, got
        # the endpoint's own disk is untouched: another session writes fine
        other = await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "1g"})
        assert "ok" in (await _out(client, other.id, "open('f', 'w').write('x'); print('ok')"))[0]
    finally:
        await _close(local)


# -- mount_map onto reserved paths; upload sizes -------------------------------------------------


@pytest.mark.parametrize("where", [
    "/proc", "/etc", "/etc/cron.d", "/home/config", "/home/work/.ssh", "/home/work/.jupyter",
    "/home/work/.local/lib", "/home", "/", "/home/work", "/sys/x", "/dev/shm", "/tmp",
    "DATA", "DATA/sessions",
])
async def test_mount_map_onto_reserved_paths_is_400(local: Local, where: str) -> None:
    client = local.client()
    await client.folders.create("vf-reserved")
    dest = where.replace("DATA", str(local.app[CONFIG].data_dir))
    with pytest.raises(BackendAIError, match="400"):
        await client.sessions.create(IMAGE, mounts=["vf-reserved"],
                                     mount_map={"vf-reserved": dest})
    await client.close()


@pytest.mark.parametrize("size", [2**70, -1, "1e3", 2**53])
async def test_request_upload_size_is_validated(local: Local, size: Any) -> None:
    client = local.client()
    await client.folders.create("vf-size")
    with pytest.raises(BackendAIError, match="400"):
        await client.http.json("POST", "/folders/vf-size/request-upload",
                               json={"path": "big.bin", "size": size})
    await client.close()


async def test_create_without_max_wait_is_bounded_when_capacity_stays_full(make_local: Any) -> None:
    local: Local = await make_local(capacity={"cpu": "1", "mem": "8g"}, create_wait=1.0)
    try:
        client = local.client()
        first = await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "1g"})
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(BackendAIError, match="429") as e:
            await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "1g"})
        assert loop.time() - began < 10 and "capacity stayed full" in str(e.value.__dict__)
        # nothing left queued: the next create after a destroy starts at once
        await client.sessions.destroy(first.id)
        again = await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "1g"})
        assert again.status == "RUNNING"
    finally:
        await _close(local)


# -- a machine without a layer ------------------------------------------------------------------


async def test_a_missing_layer_is_named_once_and_in_diagnostics(
    make_local: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    why = "no network of their own (slirp4netns is not installed)"
    monkeypatch.setattr(layers, "probe_net", lambda: why)
    local: Local = await make_local(sandbox="auto")
    try:
        assert [w for w in local.app[SCHEDULER].warnings if "slirp4netns" in w] == [
            f"sessions are sandboxed without {why} (see README: install slirp4netns, enable "
            "user namespaces)"]
        async with aiohttp.ClientSession() as http, http.get(local.url + "/") as resp:
            body = await resp.json()
        assert body["sandbox"] == {"sandbox": True, "user": True, "network": False,
                                   "missing": ["network"]}
        client = local.client()  # sessions still start, in the layers there are
        info = await client.sessions.create(IMAGE)
        assert (await _out(client, info.id, "import os; print(os.getuid())"))[0].strip() == "1000"
        await client.sessions.destroy(info.id)
    finally:
        await _close(local)


def test_serve_sandbox_strict_refuses_without_a_layer(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    env[LAYERS_OFF_VAR] = "network"
    strict = subprocess.run(
        [sys.executable, "-m", "backendai_jupyter", "serve", "--port", "0", "--data-dir",
         str(tmp_path / "d"), "--sandbox", "strict"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert strict.returncode == 2, strict.stderr
    assert "--sandbox strict" in strict.stderr and "no network of their own" in strict.stderr
