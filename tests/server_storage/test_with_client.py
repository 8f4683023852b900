"""The project's own client (``client.folders`` and friends) against these routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from backendai_jupyter.client import Client
from backendai_jupyter.client._config import ClientConfig

from .conftest import AK1


def make_client(
    server: TestServer, version: str | None, secret: str = "s1", **config: Any
) -> Client:
    endpoint = URL.build(scheme="http", host=server.host, port=server.port)
    return Client(ClientConfig(endpoints=(endpoint,), access_key=AK1, secret_key=secret,
                               api_version=version, **config))


@pytest.mark.parametrize("version", ["v9.20250722", "v6.20220315"])
async def test_client_folder_roundtrip(real_server: TestServer, tmp_path: Path,
                                       version: str) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(bytes(range(256)) * 1000)
    (src / "sub" / "b.txt").write_text("bee")
    async with make_client(real_server, version, "s1-secret-key") as c:
        info = await c.folders.create("proj")
        assert info.name == "proj" and info.host == "local:default"
        assert [f.name for f in await c.folders.list()] == ["proj"]
        await c.folders.upload("proj", src, "up", chunk_size=100_000)
        names = {e["name"]: e["type"] for e in await c.folders.list_files("proj", "up")}
        assert names == {"a.bin": "file", "sub": "directory"}
        await c.folders.mkdir("proj", "x/y", parents=True)
        await c.folders.rename_file("proj", "up/sub/b.txt", "c.txt")
        await c.folders.move_file("proj", "up/sub/c.txt", "x/y")
        dest = tmp_path / "dest"
        dest.mkdir()
        got = await c.folders.download("proj", "up", dest)
        assert (got / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
        # a stale partial download is resumed with Range
        part = dest / "c.txt.part"
        part.write_bytes(b"b")
        await c.folders.download("proj", "x/y/c.txt", dest / "c.txt")
        assert (dest / "c.txt").read_text() == "bee"
        await c.folders.delete_files("proj", ["up"], recursive=True)
        assert {e["name"] for e in await c.folders.list_files("proj")} == {"x"}
        await c.folders.delete("proj", forever=version >= "v8")
        assert await c.folders.list() == []
        if version >= "v8":  # emptied from the trash bin: the name is free again
            await c.folders.create("proj")


async def test_client_v5_roundtrip(client_v5: TestClient[Any, Any], tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("five")
    async with make_client(client_v5.server, "v5.20191215") as c:
        await c.folders.create("old")
        await c.folders.upload("old", tmp_path / "f.txt", "d/f.txt")
        out = await c.folders.download("old", "d/f.txt", tmp_path / "back.txt")
        assert out.read_text() == "five"
        await c.folders.delete("old")
        assert await c.folders.list() == []
