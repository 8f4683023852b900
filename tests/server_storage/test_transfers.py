"""v6+ transfers (request-upload → tus, request-download → GET with Range) and v5 multipart."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from yarl import URL

from backendai_jupyter.server.storage import FOLDER_STORE

Client = TestClient[Any, Any]
TUS = {"Tus-Resumable": "1.0.0"}


async def setup_folder(client: Client, name: str = "f") -> Path:
    resp = await client.post("/folders", json={"name": name})
    assert resp.status == 201
    store = client.server.app[FOLDER_STORE]
    return store.folder_dir(next(f for f in store.folders.values() if f.name == name))


async def request_upload(client: Client, path: str, size: int) -> URL:
    resp = await client.post("/folders/f/request-upload", json={"path": path, "size": size})
    assert resp.status == 200, await resp.text()
    info = await resp.json()
    url = URL(info["url"])
    assert url.is_absolute() and url.path == "/storage-proxy/upload"
    assert url.host == client.server.host and url.port == client.server.port
    return url.with_query(token=info["token"])


async def head_offset(client: Client, url: URL) -> int:
    resp = await client.session.head(url, headers=TUS)
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    return int(resp.headers["Upload-Offset"])


async def patch(client: Client, url: URL, offset: int, data: bytes) -> aiohttp.ClientResponse:
    headers = {**TUS, "Upload-Offset": str(offset),
               "Content-Type": "application/offset+octet-stream"}
    return await client.session.patch(url, data=data, headers=headers)


async def test_tus_upload_in_chunks_with_resume(client: Client) -> None:
    root = await setup_folder(client)
    payload = bytes(range(256)) * 40  # 10240 bytes
    url = await request_upload(client, "sub/dir/blob.bin", len(payload))

    resp = await client.session.options(url)
    assert resp.status == 200
    assert resp.headers["Tus-Resumable"] == "1.0.0" and resp.headers["Tus-Version"] == "1.0.0"
    assert int(resp.headers["Tus-Max-Size"]) > 0 and "Tus-Extension" in resp.headers
    assert await head_offset(client, url) == 0
    resp = await client.session.head(url)
    assert resp.headers["Upload-Length"] == str(len(payload))

    # chunk 1
    resp = await patch(client, url, 0, payload[:3000])
    assert resp.status == 204 and resp.headers["Upload-Offset"] == "3000"
    assert not (root / "sub/dir/blob.bin").exists()
    # a wrong offset is refused with 409 and changes nothing
    resp = await patch(client, url, 0, payload[:3000])
    assert resp.status == 409
    body = await resp.json()
    assert body["type"].endswith("upload-offset-mismatch")
    assert await head_offset(client, url) == 3000

    # chunk 2, cut half-way: the server keeps what arrived
    async def cut() -> AsyncIterator[bytes]:
        yield payload[3000:5000]
        await asyncio.sleep(0.2)
        raise ConnectionResetError("cable pulled")

    headers = {**TUS, "Upload-Offset": "3000", "Content-Type": "application/offset+octet-stream"}
    try:
        await client.session.patch(url, data=cut(), headers=headers)
    except (aiohttp.ClientError, ConnectionResetError):
        pass
    for _ in range(50):
        offset = await head_offset(client, url)
        if offset == 5000:
            break
        await asyncio.sleep(0.05)
    assert offset == 5000
    assert not (root / "sub/dir/blob.bin").exists()
    listing = await (await client.get("/folders/f/files", params={"path": ""})).json()
    assert [i["name"] for i in listing["items"]] == []  # no staging dir, no partial file

    # resume: chunk 3 finishes the upload
    resp = await patch(client, url, offset, payload[offset:])
    assert resp.status == 204 and resp.headers["Upload-Offset"] == str(len(payload))
    assert (root / "sub/dir/blob.bin").read_bytes() == payload
    assert await head_offset(client, url) == len(payload)
    resp = await patch(client, url, len(payload), b"x")
    assert resp.status == 409


async def test_tus_rejects_overflow_and_bad_tokens(client: Client) -> None:
    await setup_folder(client)
    url = await request_upload(client, "small.txt", 4)
    resp = await patch(client, url, 0, b"123456")
    assert resp.status == 400
    bad = url.with_query(token="garbage")
    resp = await client.session.head(bad)
    assert resp.status == 400
    resp = await client.session.patch(url.with_query(token=url.query["token"][:-2] + "xx"),
                                      data=b"1", headers={"Upload-Offset": "0"})
    assert resp.status == 400
    # an empty file needs no PATCH at all
    await request_upload(client, "empty.txt", 0)
    listing = await (await client.get("/folders/f/files")).json()
    assert {i["name"]: i["size"] for i in listing["items"]} == {"empty.txt": 0}


async def request_download(client: Client, path: str, archive: bool = False) -> URL:
    resp = await client.post("/folders/f/request-download",
                             json={"path": path, "archive": archive})
    assert resp.status == 200, await resp.text()
    info = await resp.json()
    assert URL(info["url"]).path == "/storage-proxy/download"
    return URL(info["url"]).with_query(token=info["token"])


async def test_download_with_range_and_archive(client: Client) -> None:
    root = await setup_folder(client)
    data = b"0123456789" * 1000
    (root / "d/e").mkdir(parents=True)
    (root / "d/file.bin").write_bytes(data)
    (root / "d/e/x.txt").write_text("x")

    url = await request_download(client, "d/file.bin")
    resp = await client.session.get(url)
    assert resp.status == 200 and await resp.read() == data
    assert resp.headers["Content-Length"] == str(len(data))
    assert "file.bin" in resp.headers["Content-Disposition"]
    resp = await client.session.get(url, headers={"Range": "bytes=9990-"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 9990-{len(data) - 1}/{len(data)}"
    assert await resp.read() == data[9990:]
    resp = await client.session.get(url, headers={"Range": "bytes=5-9"})
    assert resp.status == 206 and await resp.read() == b"56789"

    resp = await client.session.get(await request_download(client, "d"))
    assert resp.status == 400  # a directory needs archive=true
    resp = await client.session.get(await request_download(client, "d", archive=True))
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(await resp.read())) as zf:
        assert zf.read("file.bin") == data and zf.read("e/x.txt") == b"x"
    resp = await client.session.get(await request_download(client, "missing"))
    assert resp.status == 404
    assert (await resp.json())["type"].endswith("storage/file-not-found")
    resp = await client.session.get(url.with_query(token="a.b.c"))
    assert resp.status == 400


async def test_v5_multipart_upload_and_download(client_v5: Client) -> None:
    client = client_v5
    root = await setup_folder(client)
    assert (await client.post("/folders/f/request-upload", json={})).status in (404, 405)
    form = aiohttp.FormData()
    form.add_field("src", b"hello", filename="a/b.txt", content_type="application/octet-stream")
    form.add_field("src", b"world!", filename="c.txt", content_type="application/octet-stream")
    resp = await client.post("/folders/f/upload", data=form)
    assert resp.status == 201, await resp.text()
    assert (root / "a/b.txt").read_bytes() == b"hello"
    form = aiohttp.FormData()
    form.add_field("src", b"x", filename="../evil.txt", content_type="application/octet-stream")
    assert (await client.post("/folders/f/upload", data=form)).status == 400

    resp = await client.get("/folders/f/download", json={"files": ["a/b.txt", "c.txt"]})
    assert resp.status == 200
    assert resp.headers["X-TOTAL-PAYLOADS-LENGTH"] == "11"
    reader = aiohttp.MultipartReader.from_response(resp)
    parts = []
    while (part := await reader.next()) is not None:
        assert isinstance(part, aiohttp.BodyPartReader)
        parts.append((part.filename, await part.read()))
    assert parts == [("b.txt", b"hello"), ("c.txt", b"world!")]
    resp = await client.get("/folders/f/download", json={"files": ["a"]})
    assert resp.status == 400

    resp = await client.get("/folders/f/download_single", params={"file": "c.txt"})
    assert resp.status == 200 and await resp.read() == b"world!"
    resp = await client.get("/folders/f/download_single", params={"file": "a", "archive": "true"})
    with zipfile.ZipFile(io.BytesIO(await resp.read())) as zf:
        assert zf.read("b.txt") == b"hello"
