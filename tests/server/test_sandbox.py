"""Issue 11 (part A): sessions in a bubblewrap sandbox, whole-session memory limits, the
environment allow-list and the data directory's mode (table tests for the pure parts, real
sessions on the local endpoint for the rest)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from backendai_jupyter.client import BackendAIError, Client
from backendai_jupyter.server.agent.cgroups import memory_cgroup_parent
from backendai_jupyter.server.agent.layers import SessionLimits
from backendai_jupyter.server.agent.sandbox import (
    bwrap_argv,
    passwd_with_work,
    probe_bwrap,
    session_base_env,
)
from backendai_jupyter.server.manager.state import (
    CONFIG,
    KEYPAIR_FILE,
    REGISTRY,
    load_or_create_keypair,
)

from .conftest import IMAGE, Local
from .test_sessions import _out

needs_bwrap = pytest.mark.skipif(probe_bwrap() is not None, reason=f"no sandbox: {probe_bwrap()}")
needs_cgroup = pytest.mark.skipif(memory_cgroup_parent() is None,
                                  reason="no writable memory cgroup here")


# -- pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"PATH": "/bin", "LANG": "C.UTF-8", "LC_ALL": "C"},
         {"PATH": "/bin", "LANG": "C.UTF-8", "LC_ALL": "C"}),
        ({"BACKEND_SECRET_KEY": "s", "AWS_SECRET_ACCESS_KEY": "a", "JUPYTER_TOKEN": "t"}, {}),
        ({"SSH_AUTH_SOCK": "/run/agent", "DISPLAY": ":0", "HOME": "/root"}, {}),
        ({"HTTPS_PROXY": "http://p", "NVIDIA_VISIBLE_DEVICES": "all", "SSL_CERT_FILE": "/c"},
         {"HTTPS_PROXY": "http://p", "NVIDIA_VISIBLE_DEVICES": "all", "SSL_CERT_FILE": "/c"}),
    ],
)
def test_session_base_env_is_an_allow_list(
    environ: dict[str, str], expected: dict[str, str]
) -> None:
    assert session_base_env(environ) == expected


def _pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


RUNTIME = ("/srv/d/s/1.runtime", "/home/config")


@pytest.mark.parametrize(
    ("data_dir", "hide", "mounts", "keep", "binds", "ro_binds", "hidden"),
    [
        # data dir outside /home: its own tmpfs; storage folders under /home/work
        ("/srv/d", [], [(Path("/srv/d/vf/1"), "/home/work/data")], ["/usr/lib/python3"],
         [("/srv/d/s/1", "/home/work"), ("/srv/d/vf/1", "/home/work/data")], [RUNTIME],
         ["/dev/shm", "/tmp", "/home", "/run", "/srv/d"]),
        # data dir under /home (hidden with /home); a venv under /home is bound back read-only,
        # but not a path that holds the data directory
        ("/home/u/.local/share/bj", ["/home/u"], [(Path("/x/vf"), "/mnt/vf")],
         ["/home/u/venv/lib", "/home/u", "/usr/lib"],
         [("/srv/d/s/1", "/home/work"), ("/x/vf", "/mnt/vf")],
         [("/home/u/venv/lib",) * 2, RUNTIME], ["/dev/shm", "/tmp", "/home", "/run"]),
        # root: its home is hidden too; the interpreter's prefix there is bound back
        ("/root/.local/share/bj", ["/root"], [], ["/root/.pyenv/versions/3.11", "/tmp/venv"],
         [("/srv/d/s/1", "/home/work")],
         [("/root/.pyenv/versions/3.11",) * 2, ("/tmp/venv",) * 2, RUNTIME],
         ["/dev/shm", "/tmp", "/home", "/run", "/root"]),
    ],
)
def test_bwrap_argv(
    data_dir: str, hide: list[str], mounts: list[tuple[Path, str]], keep: list[str],
    binds: list[tuple[str, str]], ro_binds: list[tuple[str, str]], hidden: list[str],
) -> None:
    argv = bwrap_argv("bwrap", workdir=Path("/srv/d/s/1"), config_dir=Path(RUNTIME[0]),
                      data_dir=Path(data_dir), mounts=mounts, keep_paths=keep, hide=hide,
                      devices=["/dev/nvidiactl", "/dev/nvidia0"], info_fd=5)
    assert argv[0] == "bwrap" and argv[argv.index("--info-fd") + 1] == "5"
    for flag in ("--die-with-parent", "--unshare-pid", "--unshare-ipc", "--new-session"):
        assert flag in argv
    assert _pairs(argv, "--ro-bind") == [("/", "/"), *ro_binds]
    assert _pairs(argv, "--dev-bind") == [("/dev/nvidiactl",) * 2, ("/dev/nvidia0",) * 2]
    assert argv.index("--dev-bind") > argv.index("--dev")  # on top of the private /dev
    assert _pairs(argv, "--bind") == binds
    tmpfs = [argv[i + 1] for i, a in enumerate(argv) if a == "--tmpfs"]
    assert tmpfs == hidden
    assert argv[argv.index("--chdir") + 1] == "/home/work"
    # Later mounts win: every bind comes after the tmpfs that would hide it.
    last_tmpfs = max(i for i, a in enumerate(argv) if a == "--tmpfs")
    assert all(i > last_tmpfs for i, a in enumerate(argv) if a == "--bind")
    # No host path names where the session finds its runtime files; /home is read-only.
    assert argv[argv.index("--remount-ro") + 1] == "/home"
    assert "--unshare-user" not in argv and "--unshare-net" not in argv


@pytest.mark.parametrize(
    ("user", "net", "present", "absent", "tail"),
    [
        ("unshare", True, ["--unshare-user", "--unshare-net"], ["--cap-add"], []),
        ("map", True, ["--unshare-net", "--cap-add"], ["--unshare-user"],
         ["--map", "101000:101000"]),
        (None, False, [], ["--unshare-user", "--unshare-net", "--cap-add"], []),
    ],
)
def test_bwrap_argv_layers(user: str | None, net: bool, present: list[str], absent: list[str],
                           tail: list[str]) -> None:
    argv = bwrap_argv("bwrap", workdir=Path("/d/s/1"), config_dir=Path("/d/s/1.runtime"),
                      data_dir=Path("/d"), mounts=[], user=user, net=net,
                      host_id=(101000, 101000), data_fds={"/etc/passwd": 7}, tmp_size=2**20)
    assert all(f in argv for f in present) and not any(f in argv for f in absent)
    assert argv[argv.index("--") + 5:] == tail  # python -I -S sandbox_init.py [--map U:G]
    assert _pairs(argv, "--ro-bind-data") == [("7", "/etc/passwd")]
    sizes = [argv[i + 1] for i, a in enumerate(argv) if a == "--size"]
    assert sizes == [str(2**20)] * 2  # /dev/shm and /tmp


@pytest.mark.parametrize(
    ("text", "group", "expected"),
    [
        ("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n", False,
         "root:x:0:0::/root:/bin/sh\nwork:x:1000:1000:work:/home/work:/bin/bash\n"),
        ("root:x:0:\nwork:x:55:\nstaff:x:50:\n", True,
         "root:x:0:\nstaff:x:50:\nwork:x:1000:\n"),
        ("", False, "work:x:1000:1000:work:/home/work:/bin/bash\n"),
    ],
)
def test_passwd_names_work(text: str, group: bool, expected: str) -> None:
    assert passwd_with_work(text, group=group) == expected


# -- the sandbox --------------------------------------------------------------------------------

PROBE = r"""
import json, os, subprocess
def can(f):
    try:
        f(); return True
    except OSError:
        return False
def write(p):
    with open(p, "w") as fh:
        fh.write("x")
print(json.dumps({
    "cwd": os.getcwd(), "home": os.environ["HOME"],
    "data_dir_listing": sorted(os.listdir(DATA)) if os.path.isdir(DATA) else None,
    "keypair": os.path.exists(os.path.join(DATA, "keypair.json")),
    "write_usr": can(lambda: write("/usr/bjup-probe")),
    "write_tmp": can(lambda: write("/tmp/bjup-probe-" + os.environ["BACKENDAI_SESSION_ID"])),
    "tmp": sorted(p for p in os.listdir("/tmp") if p.startswith("bjup-probe")),
    "shm_write": can(lambda: write("/dev/shm/bjup-probe")),
    "pid1": open("/proc/1/cmdline").read().split("\0")[0],
    "env_secret": os.environ.get("BJUP_TEST_ENDPOINT_SECRET"),
    "env_own": os.environ.get("MINE"),
    "folder": open("/home/work/vf/hello.txt").read() if os.path.exists("/home/work/vf") else None,
    "caps": [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")],
}))
"""


@needs_bwrap
async def test_sandboxed_session_sees_only_its_own_world(
    make_local: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BJUP_TEST_ENDPOINT_SECRET", "do-not-leak")
    local: Local = await make_local(sandbox="bwrap")
    client = local.client()
    data = local.app[CONFIG].data_dir
    await client.folders.create("vf")
    await client.folders.upload("vf", _hello(data.parent), "hello.txt")
    a = await client.sessions.create(IMAGE, environ={"MINE": "yes"}, mounts=["vf"])
    b = await client.sessions.create(IMAGE)
    code = f"DATA = {str(data)!r}\n" + PROBE
    pa = json.loads((await _out(client, a.id, code))[0])
    pb = json.loads((await _out(client, b.id, code))[0])
    assert pa["cwd"] == pa["home"] == "/home/work"
    assert pa["data_dir_listing"] in (None, [], ["sessions"]) and not pa["keypair"]
    assert not pa["write_usr"] and pa["write_tmp"] and pa["shm_write"]
    # /tmp is private: each session sees only its own file; the host sees neither.
    assert pa["tmp"] == [f"bjup-probe-{a.id}"] and pb["tmp"] == [f"bjup-probe-{b.id}"]
    assert not Path(f"/tmp/bjup-probe-{a.id}").exists()
    assert pa["pid1"].endswith("bwrap")  # its own PID namespace
    assert pa["env_secret"] is None and pa["env_own"] == "yes"
    assert pa["folder"] == "hello" and pb["folder"] is None
    assert pa["caps"] == ["0000000000000000"]
    # The session's own files are where the API puts them.
    await _out(client, a.id, "open('made-inside.txt', 'w').write('in')")
    sess = local.app[REGISTRY].sessions[a.id]
    assert (sess.workdir / "made-inside.txt").read_text() == "in"
    for s in (a, b):
        await client.sessions.destroy(s.id)
    await client.close()
    await local.server.close()


def _hello(base: Path) -> Path:
    path = base / "hello.txt"
    path.write_text("hello")
    return path


async def test_endpoint_environment_is_not_passed_without_the_sandbox(
    make_local: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BJUP_TEST_ENDPOINT_SECRET", "do-not-leak")
    local: Local = await make_local(sandbox="none")
    client = local.client()
    info = await client.sessions.create(IMAGE, environ={"MINE": "yes"})
    code = "import os; print(os.environ.get('BJUP_TEST_ENDPOINT_SECRET'), os.environ['MINE'])"
    text, _ = await _out(client, info.id, code)
    assert text.split() == ["None", "yes"]
    await client.sessions.destroy(info.id)
    await client.close()
    await local.server.close()


def test_existing_data_dir_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    load_or_create_keypair(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    data.chmod(0o777)
    load_or_create_keypair(data)  # an existing keypair: still tightened
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / KEYPAIR_FILE).stat().st_mode) == 0o600


# -- memory -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mem", ["0", "32m", "63m"])
async def test_memory_below_the_minimum_is_refused(client: Client, mem: str) -> None:
    with pytest.raises(BackendAIError, match="400") as e:
        await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": mem})
    assert "minimum" in str(e.value)


# Each cell returns at once; what it started then goes over the session's limit together.
CHILDREN = """
import subprocess, sys
code = "b = bytearray(60 * 2**20); import time; time.sleep(60)"
procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
"""
SHM = """
import subprocess
code = "for i in range(48): open(f'/dev/shm/bjup-{i}', 'wb').write(b'x' * 2**22)"
subprocess.Popen(["python3", "-c", code])
"""


@needs_cgroup
@pytest.mark.parametrize(("what", "code"), [("children", CHILDREN), ("shared memory", SHM)])
async def test_memory_limit_covers_the_whole_session(
    make_local: Any, what: str, code: str
) -> None:
    local: Local = await make_local()
    client = local.client()
    events: list[tuple[str, dict[str, Any]]] = []
    done = asyncio.Event()

    async def listen() -> None:
        async for ev in client.events.session():
            events.append((ev.event, json.loads(ev.data)))
            if ev.event == "session_terminated":
                done.set()
                return

    info = await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "192m"})
    task = asyncio.create_task(listen())
    await asyncio.sleep(0.2)
    text, exit_code = await _out(client, info.id, code)
    assert exit_code == 0, text
    await asyncio.wait_for(done.wait(), 30)
    task.cancel()
    sess = local.app[REGISTRY].sessions[info.id]
    assert sess.status == "TERMINATED" and sess.status_info == "oom-killed", what
    reasons = {name: data["reason"] for name, data in events}
    assert reasons.get("kernel_terminated") == "oom-killed", events
    listed = await client.sessions.list(status="TERMINATED", fields=["name", "status_info"])
    assert [(s["name"], s["status_info"]) for s in listed] == [(info.name, "oom-killed")], listed
    await client.close()
    await local.server.close()


@needs_cgroup
async def test_oom_kill_of_the_kernel_is_told_in_plain_words(make_local: Any) -> None:
    local: Local = await make_local()
    client = local.client()
    info = await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "256m"})
    text, exit_code = await _out(client, info.id, "b = bytearray(600 * 2**20)")
    assert exit_code == 137 and "ran out of memory" in text and "256 MiB" in text, text
    for _ in range(60):
        if local.app[REGISTRY].sessions[info.id].status == "TERMINATED":
            break
        await asyncio.sleep(0.1)
    assert local.app[REGISTRY].sessions[info.id].status_info == "oom-killed"
    await client.close()
    await local.server.close()


def test_serve_says_once_when_sessions_are_not_isolated(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
    env["PATH"] = str(tmp_path)  # no bwrap on this PATH
    proc = subprocess.Popen(
        [sys.executable, "-m", "backendai_jupyter", "serve", "--port", "0", "--data-dir",
         str(tmp_path / "d"), "--sandbox", "auto"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on" in line:
                break
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert err.count("sessions are not isolated") == 1, err
    strict = subprocess.run(
        [sys.executable, "-m", "backendai_jupyter", "serve", "--port", "0", "--data-dir",
         str(tmp_path / "d"), "--sandbox", "bwrap"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert strict.returncode == 2 and "bubblewrap" in strict.stderr


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, SessionLimits()),
        ({"pids": "256", "tmp": "64m", "disk": "2g"}, SessionLimits(256, 64 * 2**20, 2 * 2**30)),
    ],
)
def test_session_limits(raw: dict[str, str], expected: SessionLimits) -> None:
    assert SessionLimits.parse(raw) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [({"cpu": "2"}, "unknown session limit"), ({"pids": "4"}, "too small"),
     ({"tmp": "1k"}, "too small"), ({"pids": "many"}, "invalid amount")],
)
def test_session_limits_refused(raw: dict[str, str], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        SessionLimits.parse(raw)
