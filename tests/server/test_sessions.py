"""Session lifecycle, listing, files, events, resources and the scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from backendai_jupyter.client import Client, Finished, NotFoundError, Output
from backendai_jupyter.server.agent.sandbox import probe_bwrap

from .conftest import IMAGE, Local, marked_pids, sleep_marker


async def _out(client: Client, sid: str, code: str) -> tuple[str, int | None]:
    text, exit_code = "", None
    async for ev in client.sessions.execute(sid, code, transport="rest"):
        if isinstance(ev, Output) and ev.item.kind in ("stdout", "stderr"):
            text += ev.item.data
        elif isinstance(ev, Finished):
            exit_code = ev.exit_code
    return text, exit_code


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_create_info_list_destroy(client: Client) -> None:
    info = await client.sessions.create(IMAGE, name="sess-one", environ={"GREETING": "hello"})
    assert info.status == "RUNNING" and info.created and info.name == "sess-one"
    again = await client.sessions.create(IMAGE, name="sess-one")
    assert again.id == info.id and not again.created
    details = await client.sessions.info("sess-one")
    assert details["status"] == "RUNNING" and details["image"] == IMAGE
    assert details["occupiedSlots"].startswith("{'cpu': Decimal('1.000000')")
    listed = await client.sessions.list()
    assert [s["name"] for s in listed] == ["sess-one"]
    text, _ = await _out(
        client,
        info.id,
        "import os; print(os.environ['GREETING'], os.environ['BACKENDAI_SESSION_ID'], os.getcwd())",
    )
    greeting, sid, cwd = text.split()
    sandboxed = probe_bwrap() is None  # "auto": in the sandbox where bubblewrap works
    assert greeting == "hello" and sid == info.id
    assert cwd == "/home/work" if sandboxed else cwd.endswith(info.id)
    logs = await client.sessions.logs(info.id)
    assert isinstance(logs, str)
    result = await client.sessions.destroy(info.id)
    assert result == {"stats": {"status": "terminated"}}
    with pytest.raises(NotFoundError):
        await client.sessions.info("sess-one")
    assert await client.sessions.list() == []
    assert [s["status"] for s in await client.sessions.list(status="TERMINATED")] == ["TERMINATED"]


@pytest.mark.parametrize("sandbox", ["none", "auto"])
async def test_destroy_kills_process_tree(make_local: Any, sandbox: str) -> None:
    local: Local = await make_local(sandbox=sandbox)
    client = local.client()
    info = await client.sessions.create(IMAGE)
    child, orphan, daemon = sleep_marker(), sleep_marker(), sleep_marker()
    code = (
        "import subprocess, os\n"
        f"p = subprocess.Popen(['sleep', '{child}'])\n"
        f"q = subprocess.Popen(['sh', '-c', 'sleep {orphan} & echo $!'], stdout=subprocess.PIPE,"
        " start_new_session=True)\n"
        # A double-forked daemon: its own session, re-parented to PID 1 (of the sandbox or host).
        f"os.system('setsid sh -c \"sleep {daemon} &\" </dev/null >/dev/null 2>&1')\n"
        "print(q.stdout.readline().decode().strip())\n"
    )
    text, code_ = await _out(client, info.id, code)
    assert code_ == 0, text
    found = {m: marked_pids(m) for m in (child, orphan, daemon)}
    assert all(len(p) == 1 for p in found.values()), found
    pids = set().union(*found.values())
    await client.sessions.destroy(info.id)
    for _ in range(40):
        if not any(_alive(p) for p in pids):
            break
        await asyncio.sleep(0.05)
    assert not any(_alive(p) for p in pids), [p for p in pids if _alive(p)]
    await client.close()
    await local.server.close()


async def test_destroyed_while_starting_stays_terminated(client: Client) -> None:
    """A session destroyed while it is still being prepared must not come back RUNNING when
    its start finishes (``%backendai rm`` right after ``run --enqueue-only``)."""
    info = await client.sessions.create(IMAGE, name="short-lived", enqueue_only=True)
    await client.sessions.destroy(info.id)
    ok = await client.sessions.create(IMAGE, name="after")  # a start that completes meanwhile
    await client.sessions.destroy(ok.id)
    await asyncio.sleep(1.0)
    statuses = {s["name"]: s["status"] for s in await client.sessions.list(
        status=("TERMINATED", "CANCELLED", "RUNNING", "PREPARING", "PREPARED", "CREATING"),
        fields=("name", "status"))}
    assert statuses["short-lived"] in ("TERMINATED", "CANCELLED")


async def test_files_upload_download_list(client: Client, session: str, tmp_path: Path) -> None:
    src = tmp_path / "up"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("alpha")
    await client.sessions.upload(session, [src / "sub" / "a.txt"], basedir=src)
    text, _ = await _out(client, session, "print(open('sub/a.txt').read())")
    assert text == "alpha\n"
    files = await client.sessions.list_files(session, "sub")
    assert [f["filename"] for f in files] == ["a.txt"]
    got = await client.sessions.download(session, ["sub/a.txt"], tmp_path / "down")
    assert [p.read_text() for p in got] == ["alpha"]


async def test_lifecycle_events_and_batch_success(client: Client) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    done = asyncio.Event()

    async def listen() -> None:
        async for ev in client.events.session():
            events.append((ev.event, json.loads(ev.data)))
            if ev.event == "session_terminated":
                done.set()
                return

    task = asyncio.create_task(listen())
    await asyncio.sleep(0.3)
    info = await client.sessions.create(
        IMAGE,
        type="batch",
        startup_command="echo batch-ran > out.txt; exit 0",
        enqueue_only=True,
    )
    await asyncio.wait_for(done.wait(), 30)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    names = [n for n, _ in events]
    for expected in (
        "session_pending",
        "session_scheduled",
        "kernel_started",
        "session_started",
        "session_success",
        "kernel_terminated",
        "session_terminated",
    ):
        assert expected in names, names
    assert names.index("session_started") < names.index("session_success")
    success = dict(events)["session_success"]
    assert success["sessionId"] == info.id and success["exitCode"] == 0
    assert success["reason"] == "task-success"
    assert set(dict(events)["kernel_started"]) >= {"kernelId", "sessionName", "ownerAccessKey"}


async def test_batch_mode_execute(client: Client, session: str) -> None:
    run = client.sessions.execute(
        session,
        "",
        mode="batch",
        options={"clean": "echo clean", "build": "echo build", "exec": "echo run; exit 3"},
        transport="rest",
    )
    text, steps = "", []
    async for ev in run:
        if isinstance(ev, Output):
            text += ev.item.data
        elif not isinstance(ev, Finished):
            steps.append((ev.step, ev.exit_code))  # type: ignore[union-attr]
    assert steps == [("clean", 0), ("build", 0)]
    assert text == "clean\nbuild\nrun\n" and run.exit_code == 3


async def test_capacity_pending_then_running(make_local: Any) -> None:
    local: Local = await make_local(capacity={"cpu": "2", "mem": "8g"})
    client = local.client()
    try:
        a = await client.sessions.create(IMAGE, resources={"cpu": "1"})
        b = await client.sessions.create(IMAGE, resources={"cpu": "1"})
        c = await client.sessions.create(IMAGE, resources={"cpu": "1"}, enqueue_only=True)
        assert (a.status, b.status, c.status) == ("RUNNING", "RUNNING", "PENDING")
        d = await client.sessions.create(IMAGE, resources={"cpu": "1"}, max_wait=1)
        assert d.status == "TIMEOUT"
        assert (await client.sessions.info(c.id))["status"] == "PENDING"
        await client.sessions.destroy(a.id)
        for _ in range(100):
            if (await client.sessions.info(c.id))["status"] == "RUNNING":
                break
            await asyncio.sleep(0.1)
        assert (await client.sessions.info(c.id))["status"] == "RUNNING"
        assert (await client.sessions.info(d.id))["status"] == "PENDING"  # FIFO: c first
        with pytest.raises(Exception, match="exceeds"):
            await client.sessions.create(IMAGE, resources={"cpu": "3"})
    finally:
        await client.close()
        await local.server.close()


async def test_resources_affinity(client: Client) -> None:
    info = await client.sessions.create(IMAGE, resources={"cpu": "1", "mem": "256m"})
    text, _ = await _out(client, info.id, "import os; print(len(os.sched_getaffinity(0)))")
    assert text.strip() == "1"
    text, code = await _out(client, info.id, "b = bytearray(16 * 1024 * 1024); print('ok')")
    assert text == "ok\n"
    await client.sessions.destroy(info.id)


async def test_no_gpu_refused(client: Client) -> None:
    if os.path.exists("/dev/nvidia0"):
        pytest.skip("this machine has GPUs")
    with pytest.raises(Exception, match="cuda"):
        await client.sessions.create(IMAGE, resources={"cuda.shares": "1"})


async def test_idle_timeout(make_local: Any) -> None:
    local: Local = await make_local(idle_timeout=1.0)
    client = local.client()
    try:
        info = await client.sessions.create(IMAGE)
        for _ in range(60):
            await asyncio.sleep(0.1)
            try:
                await client.sessions.info(info.id)
            except NotFoundError:
                break
        else:
            pytest.fail("idle session was not destroyed")
    finally:
        await client.close()
        await local.server.close()


async def test_gql_both_paths(local: Local, client: Client, session: str) -> None:
    data = await client.gql(
        "query { compute_session_list(limit: 10, offset: 0) { items { name id status } total_count } }"
    )
    assert data["compute_session_list"]["total_count"] == 1
    await client.connect()
    bare = await client.http.json(
        "POST",
        "/admin/graphql",
        json={
            "query": "query($l:Int!){ compute_session_list(limit:$l) { items { id } } }",
            "variables": {"l": 5},
        },
    )
    assert bare["compute_session_list"]["items"][0]["id"] == session
    bad = await client.http.json(
        "POST", "/admin/gql", json={"query": "{ compute_session_list { items { bogus } } }"}
    )
    assert re.search("bogus", bad["errors"][0]["message"])


async def test_v6_emulation_event_names(make_local: Any) -> None:
    local: Local = await make_local(api_version="v6.20220615")
    client = local.client()
    names: list[str] = []
    try:
        info = await client.sessions.create(IMAGE, name="old-style")

        async def listen() -> None:
            async for ev in client.events.session(session_name="old-style"):
                names.append(ev.event)
                if ev.event == "session_terminated":
                    return

        task = asyncio.create_task(listen())
        await asyncio.sleep(0.3)
        await client.sessions.destroy(info.id)
        await asyncio.wait_for(task, 10)
        assert names == ["kernel_terminating", "kernel_terminated", "session_terminated"]
        assert (await client.http.json("GET", "/"))["manager"].startswith("22.09")
    finally:
        await client.close()
        await local.server.close()


async def test_reused_name_targets_the_live_session(client: Client) -> None:
    first = await client.sessions.create(IMAGE, name="reused-name")
    await client.sessions.destroy("reused-name")
    second = await client.sessions.create(IMAGE, name="reused-name")
    assert second.id != first.id and second.created
    assert (await client.sessions.info("reused-name"))["status"] == "RUNNING"
    await client.sessions.destroy("reused-name")
    live = [s["id"] for s in await client.sessions.list()]
    assert second.id not in live


async def test_folders_mounted_by_mounts_and_mount_map(client: Client, tmp_path: Path) -> None:
    await client.folders.create("data1")
    await client.folders.create("data2")
    src = tmp_path / "in.txt"
    src.write_text("input")
    await client.folders.upload("data1", src, "in.txt")
    sess = await client.sessions.create(
        IMAGE, mounts=["data1", "data2"], mount_map={"data2": "/home/work/out"}
    )
    try:
        code = (
            "print(open('data1/in.txt').read())\n"
            "_ = open('out/result.txt', 'w').write('written in the session')"
        )
        text, exit_code = await _out(client, sess.id, code)
        assert (text, exit_code) == ("input\n", 0)
    finally:
        await client.sessions.destroy(sess.id)
    names = {f["name"] for f in await client.folders.list_files("data2")}
    assert names == {"result.txt"}
    out = await client.folders.download("data2", "result.txt", tmp_path / "r.txt")
    assert out.read_text() == "written in the session"


async def test_unknown_folder_mount_is_404(client: Client) -> None:
    with pytest.raises(NotFoundError):
        await client.sessions.create(IMAGE, mounts=["no-such-folder"])
