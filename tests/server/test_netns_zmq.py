"""The kernel's channels dialled inside the session's network (``netns_zmq.py``), and the relay
an unprivileged endpoint falls back to."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from backendai_jupyter.server.agent import netns_zmq
from backendai_jupyter.server.agent.layers import probe_bwrap, probe_net, probe_userns
from backendai_jupyter.server.manager.state import REGISTRY

from .conftest import IMAGE, Local
from .test_sessions import _out

needs_root_bwrap = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("bwrap") is None or probe_bwrap() is not None,
    reason="joining another network namespace needs root and bubblewrap",
)

# A ZMQ echo in a network namespace of its own: its pid and port, then one answer.
ECHO = (
    "import os, zmq; s = zmq.Context().socket(zmq.REP);"
    "p = s.bind_to_random_port('tcp://127.0.0.1');"
    "print(os.getpid(), p, flush=True); s.send(s.recv() + b'!')"
)


def _netns_of_tasks() -> dict[str, str]:
    out = {}
    for tid in os.listdir("/proc/self/task"):
        with_ns = f"/proc/self/task/{tid}/ns/net"
        try:
            out[tid] = os.readlink(with_ns)
        except OSError:
            continue
    return out


@pytest.fixture
def echo() -> Iterator[tuple[int, int]]:
    proc = subprocess.Popen(
        ["bwrap", "--dev-bind", "/", "/", "--unshare-net", "--die-with-parent",
         sys.executable, "-c", ECHO],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        pid, port = (int(x) for x in proc.stdout.readline().split())
        yield pid, port
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@needs_root_bwrap
def test_context_dials_inside_the_namespace(echo: tuple[int, int]) -> None:
    pid, port = echo
    ours = os.readlink("/proc/self/ns/net")
    theirs = os.readlink(f"/proc/{pid}/ns/net")
    assert ours != theirs
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        ctx = netns_zmq.context_in(fd)
    finally:
        os.close(fd)
    try:
        # Only libzmq's own threads moved (its I/O thread, its reaper); the caller did not.
        moved = [t for t, ns in _netns_of_tasks().items() if ns == theirs]
        names = {Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in moved}
        assert "ZMQbg/IO/0" in names and all(n.startswith("ZMQbg/") for n in names), names
        assert os.readlink("/proc/self/ns/net") == ours
        req: Any = zmq.Context.shadow(ctx.underlying).socket(zmq.REQ)
        req.linger = 0
        req.rcvtimeo = req.sndtimeo = 10_000
        req.connect(f"tcp://127.0.0.1:{port}")  # the echo's loopback, not the host's
        req.send(b"hi")
        assert req.recv() == b"hi!"
        req.close()
    finally:
        ctx.destroy(linger=0)
    assert theirs not in _netns_of_tasks().values()  # its I/O thread ended with it


def _zmq_threads() -> int:
    return sum(Path(f"/proc/self/task/{t}/comm").read_text().startswith("ZMQbg/")
               for t in os.listdir("/proc/self/task"))


def test_a_namespace_that_cannot_be_joined_is_oserror(tmp_path: Path) -> None:
    before = _zmq_threads()
    not_a_namespace = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(OSError):
            netns_zmq.context_in(not_a_namespace)
    finally:
        os.close(not_a_namespace)
    # The joining thread ended, and no libzmq thread was left behind by the failed start.
    assert not any(t.name == "bjup-netns-zmq" for t in threading.enumerate())
    assert _zmq_threads() == before


needs_net_layers = pytest.mark.skipif(
    probe_bwrap() is not None or probe_userns() is not None or probe_net() is not None,
    reason=f"sandbox layers missing: {probe_bwrap() or probe_userns() or probe_net()}",
)


async def _session_tasks(local: Local, sid: str) -> tuple[Any, str]:
    proc = local.app[REGISTRY].sessions[sid].process
    assert proc is not None and proc.sandbox is not None and proc.sandbox.info is not None
    return proc, os.readlink(f"/proc/{proc.sandbox.info.pid}/ns/net")


@needs_net_layers
@pytest.mark.timeout(240)
async def test_kernel_channels_without_a_host_port(make_local: Any) -> None:
    local: Local = await make_local(sandbox="strict")
    try:
        client = local.client()
        sess = await client.sessions.create(IMAGE)
        proc, netns = await _session_tasks(local, sess.id)
        assert await _out(client, sess.id, "print(6 * 7)") == ("42\n", 0)
        if os.geteuid() == 0:
            assert proc.context is not None and proc.relay is None
            assert netns in _netns_of_tasks().values()
        await client.http.json("PATCH", f"/session/{sess.id}")  # restart: new kernel, new way
        assert await _out(client, sess.id, "print(7 * 6)") == ("42\n", 0)
        await client.sessions.destroy(sess.id)
        for _ in range(50):
            if netns not in _netns_of_tasks().values():
                break
            await asyncio.sleep(0.1)
        assert netns not in _netns_of_tasks().values()  # nothing of ours left in there
    finally:
        for c in local.clients:
            await c.close()
        await local.server.close()


@needs_net_layers
@pytest.mark.timeout(240)
async def test_unprivileged_endpoint_relays(make_local: Any, monkeypatch: Any) -> None:
    def refused(fd: int) -> Any:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(netns_zmq, "context_in", refused)
    local: Local = await make_local(sandbox="strict")
    try:
        client = local.client()
        sess = await client.sessions.create(IMAGE)
        proc, _ = await _session_tasks(local, sess.id)
        assert proc.context is None and proc.relay is not None
        assert await _out(client, sess.id, "print(6 * 7)") == ("42\n", 0)
        await client.sessions.destroy(sess.id)
        assert proc.relay is None
    finally:
        for c in local.clients:
            await c.close()
        await local.server.close()
