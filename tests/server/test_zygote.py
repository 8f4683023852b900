"""The kernel fork server (``server/agent/zygote.py``): kernels it forks are indistinguishable from
kernels started the classic way (``limits.py`` launcher + ``python -m ipykernel_launcher``), and
the endpoint falls back to the classic way whenever the zygote cannot be used."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from backendai_jupyter.client import Client
from backendai_jupyter.server.agent.sandbox import probe_bwrap
from backendai_jupyter.server.agent.zygote import NO_ZYGOTE_VAR
from backendai_jupyter.server.manager.scheduler import SCHEDULER
from backendai_jupyter.server.manager.state import CONFIG, REGISTRY

from .conftest import IMAGE, Local
from .test_sessions import _alive, _out

# Everything a session's code can observe about how its kernel was started.
PROBE = r"""
import json, os, random, resource, signal, site, stat, sys, sysconfig, tempfile, threading
from IPython.paths import get_ipython_dir
home = os.environ["HOME"]
rel = lambda p: p.replace(home, "$HOME") if isinstance(p, str) else p
skip = {"JPY_PARENT_PID", "HOME", "PWD", "BACKENDAI_SESSION_ID", "BACKENDAI_SESSION_NAME",
        "BACKENDAI_KERNEL_ID", "BACKENDAI_ACCESS_KEY"}
print(json.dumps({
    "ppid": os.getppid(),
    "random": random.random(),
    "facts": {
        "cwd": rel(os.getcwd()),
        "env": {k: v for k, v in os.environ.items() if k not in skip},
        "parent_env": os.environ.get("JPY_PARENT_PID") == str(os.getppid()),
        "own_group_and_session": os.getpgid(0) == os.getpid() == os.getsid(0),
        "affinity": sorted(os.sched_getaffinity(0)),
        "rlimit_data": resource.getrlimit(resource.RLIMIT_DATA),
        "rlimit_nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "umask": os.umask(0o022),
        "stdin_fifo": stat.S_ISFIFO(os.fstat(0).st_mode),
        "stdout_log": rel(os.readlink("/proc/self/fd/1")).split("/")[-1].endswith(".log"),
        "open_fds": sorted(int(f) for f in os.listdir("/proc/self/fd") if int(f) <= 2),
        "argv": [sys.argv[0].split("/")[-1], *sys.argv[1:2]],
        "path": sys.path,
        "user_base": [rel(site.USER_BASE), rel(site.USER_SITE),
                      rel(sysconfig.get_config_var("userbase"))],
        "ipython_dir": rel(get_ipython_dir()),
        "tempdir": tempfile.gettempdir(),
        "signals": [str(signal.getsignal(s)) for s in
                    (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE, signal.SIGHUP)],
        "sigmask": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "main": sys.modules["__main__"].__name__,
        "no_private_modules": not any(m in sys.modules for m in ("limits", "zygote_main")),
        "limits_var_hidden": "BJUP_LIMITS" not in os.environ,
        "threads_named": sorted(t.name for t in threading.enumerate()
                                if not t.name.startswith(("Thread-", "Dummy"))),
    },
}))
"""


async def _probe(client: Client, sid: str) -> dict[str, Any]:
    text, code = await _out(client, sid, PROBE)
    assert code == 0, text
    result: dict[str, Any] = json.loads(text)
    return result


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


@pytest.mark.parametrize("sandbox", ["none", "bwrap"])
async def test_forked_kernels_match_classic_ones(
    make_local: Any, monkeypatch: pytest.MonkeyPatch, sandbox: str
) -> None:
    if sandbox == "bwrap" and probe_bwrap() is not None:
        pytest.skip(f"no sandbox here: {probe_bwrap()}")
    forked: Local = await make_local(sandbox=sandbox)
    zygote = forked.app[SCHEDULER].zygote
    assert zygote is not None and await zygote.ready()
    monkeypatch.setenv(NO_ZYGOTE_VAR, "1")
    classic: Local = await make_local(sandbox=sandbox)
    monkeypatch.delenv(NO_ZYGOTE_VAR)
    assert classic.app[SCHEDULER].zygote is None
    res = {"cpu": "1", "mem": "512m"}
    env = {"GREETING": "hello"}
    a, b = forked.client(), classic.client()
    sa = await a.sessions.create(IMAGE, resources=res, environ=env)
    sa2 = await a.sessions.create(IMAGE, resources=res, environ=env)
    sb = await b.sessions.create(IMAGE, resources=res, environ=env)
    pa, pa2, pb = await _probe(a, sa.id), await _probe(a, sa2.id), await _probe(b, sb.id)
    if sandbox == "none":
        assert pa["ppid"] == pa2["ppid"] == zygote.pid  # really forked by the zygote
        assert pb["ppid"] == os.getpid()  # really the classic way
    else:  # the parent is the relay outside the sandbox's PID namespace (pid 0 there)
        assert pa["ppid"] == pa2["ppid"] == pb["ppid"] == 0
        kpid = forked.app[REGISTRY].sessions[sa.id].process.kernel_pid()  # type: ignore[union-attr]
        assert kpid is not None and _ppid(_ppid(kpid)) == zygote.pid
        kpid = classic.app[REGISTRY].sessions[sb.id].process.kernel_pid()  # type: ignore[union-attr]
        assert kpid is not None and _ppid(kpid) == os.getpid()  # the launcher relays
    assert pa["random"] != pa2["random"]  # random is reseeded in each child
    fa, fb = pa["facts"], pb["facts"]
    # The two endpoints have different data dirs; compare paths relative to each.
    fa_s, fb_s = json.dumps(fa), json.dumps(fb)
    fa_s = fa_s.replace(str(forked.app[CONFIG].data_dir), "$DATA")
    fb_s = fb_s.replace(str(classic.app[CONFIG].data_dir), "$DATA")
    fa, fb = json.loads(fa_s), json.loads(fb_s)
    env_a, env_b = fa.pop("env"), fb.pop("env")
    keys = {*env_a, *env_b}
    assert {k: (env_a.get(k), env_b.get(k)) for k in keys if env_a.get(k) != env_b.get(k)} == {}
    assert fa == fb
    assert fa["affinity"] and fa["own_group_and_session"]
    assert fa["parent_env"] == (sandbox == "none")
    assert env_a["GREETING"] == "hello"
    for c, sid in ((a, sa.id), (a, sa2.id), (b, sb.id)):
        await c.sessions.destroy(sid)
    for c in (a, b):
        await c.close()
    await forked.server.close()
    await classic.server.close()
    assert zygote.proc is not None and zygote.proc.returncode is not None


@pytest.fixture
async def plain(make_local: Any) -> Any:
    """An endpoint without the sandbox: these tests look at host pids from inside sessions."""
    local: Local = await make_local(sandbox="none")
    client = local.client()
    yield local, client
    await client.close()
    await local.server.close()


async def test_fork_limits_interrupt_restart_and_death(plain: tuple[Local, Client]) -> None:
    local, client = plain
    zygote = local.app[SCHEDULER].zygote
    assert zygote is not None and await zygote.ready()
    info = await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "256m"})
    text, _ = await _out(client, info.id, "import os; print(os.getpid(), os.getppid())")
    pid, ppid = (int(x) for x in text.split())
    assert ppid == zygote.pid
    # The kernel dies: the zygote reaps it, the endpoint notices and starts a new one.
    text, code = await _out(client, info.id, "import os; os.kill(os.getpid(), 9)")
    assert "died" in text and code == 130
    for _ in range(100):
        text, code = await _out(client, info.id, "import os; print(os.getpid(), os.getppid())")
        if code == 0:
            break
    new_pid, new_ppid = (int(x) for x in text.split())
    assert new_pid != pid and new_ppid == zygote.pid and not _alive(pid)
    await client.sessions.destroy(info.id)
    assert not _alive(new_pid)


async def test_fallbacks_to_the_classic_start(plain: tuple[Local, Client]) -> None:
    local, client = plain
    zygote = local.app[SCHEDULER].zygote
    assert zygote is not None and await zygote.ready()
    # An interpreter-startup variable the zygote was not started with: classic start.
    info = await client.sessions.create(IMAGE, environ={"PYTHONHASHSEED": "0"})
    code = "import os, sys; print(os.getppid(), sys.flags.hash_randomization)"
    text, _ = await _out(client, info.id, code)
    assert text.split() == [str(os.getpid()), "0"]
    await client.sessions.destroy(info.id)
    # The zygote is gone: kernels still start (the classic way).
    assert zygote.proc is not None
    zygote.proc.send_signal(signal.SIGKILL)
    await zygote.proc.wait()
    info = await client.sessions.create(IMAGE)
    assert info.status == "RUNNING"
    text, _ = await _out(client, info.id, "import os; print(os.getppid())")
    assert text.strip() == str(os.getpid())
    await client.sessions.destroy(info.id)
