"""Same-machine folder transfers: the file's descriptor over the endpoint's abstract socket.

The real ``create_app`` server and our client: uploads and downloads go through the socket (no
tus PATCH, no storage GET), bytes intact, progress reported, a partial ``.part`` resumed; a copy
cut half-way resumes over HTTP from the offset ``HEAD`` reports; the socket refuses what HTTP
refuses (bad token, offset mismatch, a descriptor that is no regular file, past the end); the
endpoint's memory does not grow with the file; ``BACKEND_LOCAL_TRANSFERS=0`` keeps HTTP.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from backendai_jupyter.client import ClientConfig
from backendai_jupyter.client._local_transfer import peer_uid

from .test_with_client import make_client

PAYLOAD = os.urandom(3 * 1024 * 1024 + 321)
MiB = 1024 * 1024


def _stored(data_dir: Path, name: str) -> Path:
    found = [p for p in (data_dir / "vfolders").rglob(name) if ".staging" not in p.parts]
    assert len(found) == 1, found
    return found[0]


def _spy(c: Any, name: str, calls: list[Any]) -> None:
    original = getattr(c.http, name)

    def spying(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("offset", args[1] if len(args) > 1 else None))
        return original(*args, **kwargs)

    setattr(c.http, name, spying)


async def test_upload_and_download_through_the_socket(
    real_server: TestServer, data_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(PAYLOAD)
    patches: list[Any] = []
    streams: list[Any] = []
    async with make_client(real_server, None, "s1-secret-key") as c:
        _spy(c, "send_file", patches)
        _spy(c, "stream", streams)
        await c.folders.create("f")
        seen: list[tuple[int, int]] = []
        await c.folders.upload("f", src, "d/big.bin", progress=lambda d, t: seen.append((d, t)))
        assert patches == []  # not one byte over HTTP
        assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
        assert _stored(data_dir, "big.bin").read_bytes() == PAYLOAD
        assert not list((data_dir / "vfolders").rglob("*.part"))  # moved into place

        out = tmp_path / "back.bin"
        (tmp_path / "back.bin.part").write_bytes(PAYLOAD[:1_000_001])
        got: list[tuple[int, int]] = []
        await c.folders.download("f", "d/big.bin", out, progress=lambda d, t: got.append((d, t)))
        assert streams == []
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(PAYLOAD).digest()
        assert not (tmp_path / "back.bin.part").exists()
        assert got[-1] == (len(PAYLOAD), len(PAYLOAD))

        (tmp_path / "empty.bin").write_bytes(b"")  # nothing to copy: the empty PATCH as before
        await c.folders.upload("f", tmp_path / "empty.bin")
        assert _stored(data_dir, "empty.bin").read_bytes() == b""


async def test_a_cut_copy_resumes_over_http(
    real_server: TestServer, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backendai_jupyter.server.storage import local_transfer

    src = tmp_path / "big.bin"
    src.write_bytes(PAYLOAD)
    real_copy = local_transfer.copy_range
    copies: list[int] = []

    def failing_second(src_fd: int, dst_fd: int, so: int, do: int, count: int) -> int:
        copies.append(so)
        if len(copies) > 1:
            raise OSError(errno.EIO, "the disk went away")
        return real_copy(src_fd, dst_fd, so, do, count)

    monkeypatch.setattr(local_transfer, "COPY_STEP", MiB)
    monkeypatch.setattr(local_transfer, "copy_range", failing_second)
    patches: list[Any] = []
    async with make_client(real_server, None, "s1-secret-key") as c:
        _spy(c, "send_file", patches)
        await c.folders.create("f")
        await c.folders.upload("f", src, "big.bin")
        assert copies == [0, MiB] and patches == [MiB]  # HTTP took over where the socket stopped
        assert _stored(data_dir, "big.bin").read_bytes() == PAYLOAD

        copies.clear()
        out = tmp_path / "back.bin"
        streams: list[Any] = []
        _spy(c, "stream", streams)
        await c.folders.download("f", "big.bin", out)
        assert copies == [0, MiB] and len(streams) == 1  # one ranged GET for the rest
        assert out.read_bytes() == PAYLOAD


def _ask(address: str, request: dict[str, Any], fd: int) -> list[dict[str, Any]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect("\0" + address[1:])
        assert peer_uid(sock) == os.getuid()
        socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [fd])
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


async def _asked(address: str, request: dict[str, Any], fd: int) -> list[dict[str, Any]]:
    return await asyncio.to_thread(_ask, address, request, fd)  # the server runs on this loop


async def _grant(real_server: TestServer, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    async with make_client(real_server, None, "s1-secret-key") as c:
        if kind == "upload":
            await c.folders.create("f")
        info = await c.http.json("POST", f"/folders/f/request-{kind}", json=body)
    assert isinstance(info, dict) and info["local_transfer"].startswith("@")
    return info


async def test_the_socket_refuses_what_http_refuses(
    real_server: TestServer, tmp_path: Path
) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    info = await _grant(real_server, "upload", {"path": "x.bin", "size": len(PAYLOAD)})
    address, url = info["local_transfer"], f"{info['url']}?token={info['token']}"
    with src.open("rb") as f:
        fd = f.fileno()
        bad = await _asked(address, {"op": "upload", "url": f"{info['url']}?token=x.y.z", "offset": 0,
                             "length": 5}, fd)
        assert bad[-1]["status"] == 400 and "JWT" in bad[-1]["error"]
        mismatch = await _asked(address, {"op": "upload", "url": url, "offset": 7, "length": 5}, fd)
        assert mismatch[-1]["status"] == 409
        too_long = await _asked(address, {"op": "upload", "url": url, "offset": 0,
                                  "length": len(PAYLOAD) + 1}, fd)
        assert too_long[-1]["status"] == 400
        unknown = await _asked(address, {"op": "delete", "url": url}, fd)
        assert unknown[-1]["status"] == 400
        partial = await _asked(address, {"op": "upload", "url": url, "offset": 0, "length": 5}, fd)
        assert partial == [{"offset": 5, "size": len(PAYLOAD), "done": True}]
        r, w = os.pipe()
        try:
            not_a_file = await _asked(address, {"op": "upload", "url": url, "offset": 5, "length": 5}, r)
            assert not_a_file[-1]["status"] == 400 and "regular file" in not_a_file[-1]["error"]
        finally:
            os.close(r)
            os.close(w)
        rest = await _asked(address, {"op": "upload", "url": url, "offset": 5,
                              "length": len(PAYLOAD) - 5}, fd)
        assert rest[-1] == {"offset": len(PAYLOAD), "size": len(PAYLOAD), "done": True}

    down = await _grant(real_server, "download", {"path": "x.bin"})
    assert down["local_transfer"] == address
    down_url = f"{down['url']}?token={down['token']}"
    with (tmp_path / "out.bin").open("wb") as f:
        for offset in (len(PAYLOAD), len(PAYLOAD) + 1):  # as HTTP's 416
            past = await _asked(address, {"op": "download", "url": down_url, "offset": offset}, f.fileno())
            assert past[-1]["status"] == 416
        whole = await _asked(address, {"op": "download", "url": down_url, "offset": 0}, f.fileno())
        assert whole[-1] == {"offset": len(PAYLOAD), "size": len(PAYLOAD), "done": True}
    assert (tmp_path / "out.bin").read_bytes() == PAYLOAD
    gone = await _grant(real_server, "download", {"path": "nothing-here.bin"})
    with (tmp_path / "out2.bin").open("wb") as f:
        missing = await _asked(address, {"op": "download", "url": f"{gone['url']}?token={gone['token']}",
                                 "offset": 0}, f.fileno())
    assert missing[-1]["status"] == 404


async def test_the_endpoints_memory_stays_flat(
    real_server: TestServer, data_dir: Path, tmp_path: Path
) -> None:
    """A 96 MiB round trip in this very process raises its peak RSS by far less than the file."""
    src = tmp_path / "big.bin"
    with src.open("wb") as f:
        for _ in range(96):
            f.write(os.urandom(MiB))
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS from here on
    before = _vmhwm()
    async with make_client(real_server, None, "s1-secret-key") as c:
        await c.folders.create("f")
        await c.folders.upload("f", src, "big.bin")
        await c.folders.download("f", "big.bin", tmp_path / "back.bin")
    assert _vmhwm() - before < 16 * MiB
    assert (tmp_path / "back.bin").stat().st_size == 96 * MiB


def _vmhwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_disabled_by_config_keeps_http(
    real_server: TestServer, data_dir: Path, tmp_path: Path
) -> None:
    assert ClientConfig.from_env({"BACKEND_ENDPOINT": "http://x", "BACKEND_ACCESS_KEY": "a",
                                  "BACKEND_SECRET_KEY": "s",
                                  "BACKEND_LOCAL_TRANSFERS": "0"}).local_transfers is False
    src = tmp_path / "small.bin"
    src.write_bytes(PAYLOAD[:1000])
    patches: list[Any] = []
    async with make_client(real_server, None, "s1-secret-key", local_transfers=False) as c:
        _spy(c, "send_file", patches)
        await c.folders.create("f")
        await c.folders.upload("f", src)
        assert patches == [0]
    assert _stored(data_dir, "small.bin").read_bytes() == PAYLOAD[:1000]


async def test_a_client_gone_stops_the_copy(
    real_server: TestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client disconnects during the second step: the endpoint stops after it (an
    interrupted transfer is not finished behind the user's back) and HEAD tells where."""
    from backendai_jupyter.server.storage import local_transfer

    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    real_copy = local_transfer.copy_range
    client_gone = threading.Event()
    steps: list[int] = []

    def copy_after_close(src_fd: int, dst_fd: int, so: int, do: int, count: int) -> int:
        steps.append(so)
        if len(steps) == 2:
            assert client_gone.wait(10)
        return real_copy(src_fd, dst_fd, so, do, count)

    monkeypatch.setattr(local_transfer, "COPY_STEP", MiB)
    monkeypatch.setattr(local_transfer, "copy_range", copy_after_close)
    info = await _grant(real_server, "upload", {"path": "cut.bin", "size": len(PAYLOAD)})
    url = f"{info['url']}?token={info['token']}"

    def first_line_then_leave() -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, src.open("rb") as f:
            sock.settimeout(10)
            sock.connect("\0" + info["local_transfer"][1:])
            socket.send_fds(sock, [json.dumps({"op": "upload", "url": url, "offset": 0,
                                               "length": len(PAYLOAD)}).encode() + b"\n"],
                            [f.fileno()])
            line = sock.makefile("rb").readline()
        client_gone.set()
        return dict(json.loads(line))

    assert await asyncio.to_thread(first_line_then_leave) == {"offset": MiB, "size": len(PAYLOAD)}
    # The next request on this upload waits for the first to end (the upload's lock): the
    # first stopped after its second step, nothing further.
    with src.open("rb") as f:
        after = await _asked(info["local_transfer"], {"op": "upload", "url": url,
                                                      "offset": 2 * MiB, "length": 0}, f.fileno())
    assert after == [{"offset": 2 * MiB, "size": len(PAYLOAD), "done": True}]
    assert steps == [0, MiB]
