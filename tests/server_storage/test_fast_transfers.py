"""The fast HTTP transfer paths (the same-machine socket off): sendfile tus PATCHes, their
fallback, resume, batched file writes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from backendai_jupyter.client import ClientError
from backendai_jupyter.client._fileio import BatchedFileWriter
from backendai_jupyter.client._http import HTTPTransport

from .test_with_client import make_client

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)


def _stored(data_dir: Path, name: str) -> Path:
    found = [p for p in (data_dir / "vfolders").rglob(name) if ".staging" not in p.parts]
    assert len(found) == 1, found
    return found[0]


async def test_one_patch_with_progress_and_range_resumed_download(
    real_server: TestServer, data_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(PAYLOAD)
    patches: list[int] = []
    seen: list[tuple[int, int]] = []
    async with make_client(real_server, None, "s1-secret-key", local_transfers=False) as c:
        original = c.http.send_file

        async def counting(*args: Any, **kwargs: Any) -> Any:
            patches.append(kwargs["length"])
            return await original(*args, **kwargs)

        c.http.send_file = counting  # type: ignore[method-assign]
        await c.folders.create("f")
        await c.folders.upload("f", src, "d/big.bin", progress=lambda d, t: seen.append((d, t)))
        assert patches == [len(PAYLOAD)]  # the whole file in one PATCH, like the official CLI
        assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)
        assert _stored(data_dir, "big.bin").read_bytes() == PAYLOAD

        patches.clear()
        await c.folders.upload("f", src, "chunked.bin", chunk_size=1024 * 1024)
        assert patches == [1024 * 1024] * 3 + [123]
        assert _stored(data_dir, "chunked.bin").read_bytes() == PAYLOAD

        (tmp_path / "empty.bin").write_bytes(b"")
        await c.folders.upload("f", tmp_path / "empty.bin")
        assert _stored(data_dir, "empty.bin").read_bytes() == b""

        out = tmp_path / "back.bin"
        (tmp_path / "back.bin.part").write_bytes(PAYLOAD[:1_000_001])
        got: list[tuple[int, int]] = []
        await c.folders.download("f", "d/big.bin", out, progress=lambda d, t: got.append((d, t)))
        assert out.read_bytes() == PAYLOAD and not (tmp_path / "back.bin.part").exists()
        assert got[0] == (1_000_001, len(PAYLOAD)) and got[-1] == (len(PAYLOAD), len(PAYLOAD))


async def test_cut_patch_is_resumed_from_the_server_offset(
    real_server: TestServer, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(PAYLOAD)
    calls: list[tuple[int, int]] = []
    async with make_client(real_server, None, "s1-secret-key", local_transfers=False) as c:
        original = c.http.send_file

        async def cut_once(method: str, url: Any, fobj: Any, **kwargs: Any) -> Any:
            calls.append((kwargs["offset"], kwargs["length"]))
            if len(calls) > 1:
                return await original(method, url, fobj, **kwargs)
            # The first PATCH delivers 1 MiB + 7 bytes, then the connection dies.
            part = 1024 * 1024 + 7
            headers = {**kwargs["headers"], "Content-Length": str(part)}
            await original(method, url, fobj, **{**kwargs, "length": part, "headers": headers})
            raise ClientError("PATCH: connection reset")

        c.http.send_file = cut_once  # type: ignore[method-assign]
        real_sleep = asyncio.sleep
        monkeypatch.setattr(asyncio, "sleep", lambda _s: real_sleep(0))
        await c.folders.create("f")
        await c.folders.upload("f", src, "big.bin")
    assert calls == [(0, len(PAYLOAD)), (1024 * 1024 + 7, len(PAYLOAD) - 1024 * 1024 - 7)]
    assert _stored(data_dir, "big.bin").read_bytes() == PAYLOAD
    assert not list((data_dir / "vfolders").glob("*/.staging/*.part"))


async def test_upload_without_sendfile_reads_the_file(
    real_server: TestServer, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS transports (and some event loops) cannot sendfile: the body is read in pieces."""
    src = tmp_path / "big.bin"
    src.write_bytes(PAYLOAD)

    async def no_sendfile(*_a: Any, **_k: Any) -> int:
        raise asyncio.SendfileNotAvailableError("not here")

    monkeypatch.setattr(asyncio.get_running_loop(), "sendfile", no_sendfile)
    async with make_client(real_server, None, "s1-secret-key", local_transfers=False) as c:
        await c.folders.create("f")
        await c.folders.upload("f", src, "big.bin", chunk_size=2 * 1024 * 1024)
    assert _stored(data_dir, "big.bin").read_bytes() == PAYLOAD


async def test_send_file_refuses_a_shrunk_file(real_server: TestServer, tmp_path: Path) -> None:
    src = tmp_path / "small.bin"
    src.write_bytes(b"x" * 100)
    async with make_client(real_server, None, "s1-secret-key", local_transfers=False) as c:
        http: HTTPTransport = c.http
        url = real_server.make_url("/storage-proxy/upload").with_query(token="a.b.c")
        with src.open("rb") as f, pytest.raises(ClientError):
            await http.send_file("PATCH", url, f, offset=0, length=1000,
                                 headers={"Content-Length": "1000"})


async def test_batched_writer(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    writer = await BatchedFileWriter.open(target, append=False, batch=1000)
    pieces = [os.urandom(n) for n in (1, 999, 1500, 7, 0, 4096)]
    for piece in pieces:
        await writer.write(piece)
    await writer.close()
    await writer.close()  # idempotent
    assert target.read_bytes() == b"".join(pieces)
    assert writer.written == sum(map(len, pieces))

    writer = await BatchedFileWriter.open(target, append=True)
    await writer.write(b"tail")
    await writer.close()
    assert target.read_bytes() == b"".join(pieces) + b"tail"


async def test_batched_writer_survives_cancellation(tmp_path: Path) -> None:
    """A cancelled transfer keeps what was handed over and never leaks the descriptor."""
    target = tmp_path / "out.bin"
    writer = await BatchedFileWriter.open(target, append=False, batch=1)
    fds_before = len(os.listdir("/proc/self/fd"))

    async def transfer() -> None:
        try:
            for _ in range(50):
                await writer.write(b"y" * 100_000)
            await asyncio.Event().wait()
        finally:
            await writer.close()

    task = asyncio.ensure_future(transfer())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):  # a write still running closes the descriptor when it is done
        if len(os.listdir("/proc/self/fd")) < fds_before:
            break
        await asyncio.sleep(0.01)
    assert len(os.listdir("/proc/self/fd")) < fds_before
    assert target.stat().st_size == 50 * 100_000 == writer.written
