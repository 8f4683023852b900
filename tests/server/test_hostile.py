"""Hostile and careless input (issue 11's findings): every one a 4xx problem, never a 500, a
hang or a side effect."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest
from yarl import URL

from backendai_jupyter.client import Client
from backendai_jupyter.server.manager.state import KEYPAIRS, REGISTRY

from .conftest import IMAGE, Local
from .test_basics import _signed

TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


def _is_problem(headers: dict[str, str], status: int) -> bool:
    return 400 <= status < 500 and headers["Content-Type"].startswith("application/problem+json")


async def _still_answers(local: Local) -> None:
    async with aiohttp.ClientSession() as http, http.get(local.url + "/") as resp:
        assert resp.status == 200


# -- authentication and bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth,status",
    [
        ("BackendAI signMethod=HMAC-SHA256, credential={ak}:é-not-hex", 401),
        ("BackendAI signMethod=HMAC-SHAKE_128, credential={ak}:00", 400),
        ("BackendAI signMethod=HMAC-SHAKE_256, credential={ak}:00", 400),
        ("BackendAI signMethod=HMAC-SHA256, credential=ÄK:00", 401),
    ],
)
async def test_odd_authorization_headers(local: Local, auth: str, status: int) -> None:
    headers = {
        "Authorization": auth.format(ak=local.access_key).encode().decode("latin-1"),
        "X-BackendAI-Version": "v9.20250722",
        "Date": datetime.now(timezone.utc).isoformat(),
    }
    async with aiohttp.ClientSession() as http:
        async with http.get(local.url + "/auth", headers=headers) as resp:
            assert resp.status == status, await resp.text()
            assert _is_problem(dict(resp.headers), resp.status)


@pytest.mark.parametrize("path", ["/session", "/admin/gql", "/folders", "/auth"])
async def test_deeply_nested_json_is_400(local: Local, path: str) -> None:
    status, headers, body = await _signed(local, "POST", path, data=b"[" * 100000 + b"]" * 100000)
    assert status == 400 and _is_problem(headers, status), body


async def test_login_with_hostile_bodies(local: Local) -> None:
    kp = local.app[KEYPAIRS][local.access_key]
    async with aiohttp.ClientSession() as http:
        url = local.url + "/server/login"
        async with http.post(url, data=b"{" * 50000) as resp:
            assert resp.status == 400
        async with http.post(url, json={"username": kp.user_email, "password": "pässwörd"}) as resp:
            assert resp.status == 401
        async with http.post(url, json={"username": kp.user_email, "password": ["x"]}) as resp:
            assert resp.status == 400


async def test_deep_graphql_selection(local: Local) -> None:
    query = "{ " + "compute_session_list { items { " * 2000 + "}" * 4001
    status, _, body = await _signed(local, "POST", "/admin/gql", json={"query": query})
    assert status == 200 and body["data"] is None
    assert "nested deeper" in str(body["errors"])


# -- session creation: validated before anything happens ---------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"maxWaitSeconds": "abc"},
        {"clusterSize": "abc"},
        {"clusterSize": [1]},
        {"type": "batch", "startupCommand": 42},
        {"config": {"mounts": [1]}},
        {"config": {"mounts": "data"}},
        {"config": {"environ": {"A": {"b": 1}}}},
        {"name": "trailing\n"},
    ],
)
async def test_bad_create_fields_leave_nothing_behind(local: Local, extra: dict[str, Any]) -> None:
    body = {"image": IMAGE, "name": "valid-name", **extra}
    status, headers, problem = await _signed(local, "POST", "/session", json=body)
    assert status == 400 and _is_problem(headers, status), problem
    assert local.app[REGISTRY].sessions == {}


async def test_rename_to_a_long_name(client: Client, local: Local, session: str) -> None:
    status, headers, _ = await _signed(
        local, "POST", f"/session/{session}/rename", json={"name": "n" * 300}
    )
    assert status == 400 and _is_problem(headers, status)
    status, headers, _ = await _signed(
        local, "POST", f"/session/{session}/rename", json={"name": "renamed\n"}
    )
    assert status == 400


# -- files inside a session ---------------------------------------------------------------------


async def test_session_file_routes_refuse_bad_names(local: Local, session: str) -> None:
    for name in ("a\x00b", "x" * 300, "d/" + "y" * 256):
        status, headers, _ = await _signed(
            local, "GET", f"/session/{session}/download_single", json={"file": name}
        )
        assert status == 400 and _is_problem(headers, status), name
        status, headers, _ = await _signed(
            local, "GET", f"/session/{session}/files", json={"path": name}
        )
        assert status == 400, name
    form = aiohttp.FormData()
    form.add_field("src", b"fine", filename="good.txt")
    form.add_field("src", b"data", filename="n" * 300)
    status, headers, _ = await _signed(local, "POST", f"/session/{session}/upload", data=form)
    assert status == 400 and _is_problem(headers, status)
    # all or nothing: the good part before the bad one was not written either
    status, _, listing = await _signed(local, "GET", f"/session/{session}/files", json={})
    assert status == 200 and "good.txt" not in str(listing["files"])
    await _still_answers(local)


# -- the storage proxy --------------------------------------------------------------------------


@pytest.fixture
async def folder(local: Local) -> AsyncIterator[str]:
    status, _, body = await _signed(local, "POST", "/folders", json={"name": "hostile"})
    assert status == 201, body
    yield "hostile"


async def _upload_url(local: Local, size: int, **extra: Any) -> URL:
    status, _, info = await _signed(
        local, "POST", "/folders/hostile/request-upload", json={"path": "f.bin", "size": size, **extra}
    )
    assert status == 200, info
    return URL(str(info["url"])).with_query(token=str(info["token"]))


async def _head(http: aiohttp.ClientSession, url: URL) -> int:
    async with http.head(url, headers=TUS) as resp:
        assert resp.status == 200
        return int(resp.headers["Upload-Offset"])


async def _folder_files(local: Local) -> list[str]:
    status, _, body = await _signed(local, "GET", "/folders/hostile/files?path=.")
    assert status == 200
    return sorted(str(i.get("name")) for i in body["items"])


async def test_empty_tus_patches_do_not_freeze_the_endpoint(local: Local, folder: str) -> None:
    url = await _upload_url(local, 10)
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            headers = {**TUS, "Upload-Offset": "0"}
            patch = http.patch(url, data=b"", headers=headers)
            async with await asyncio.wait_for(patch, 10) as resp:
                assert resp.status == 204
        assert await _head(http, url) == 0
    await asyncio.wait_for(_still_answers(local), 10)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


@pytest.mark.parametrize("streamed", [False, True])
async def test_tus_body_longer_than_declared_is_refused(
    local: Local, folder: str, streamed: bool
) -> None:
    url = await _upload_url(local, 10)
    async with aiohttp.ClientSession() as http:
        data: Any = _chunks(b"x" * 6, b"y" * 9) if streamed else b"z" * 15
        async with http.patch(url, data=data, headers={**TUS, "Upload-Offset": "0"}) as resp:
            assert resp.status == 400 and "exceeds" in await resp.text()
        assert await _head(http, url) == 0
        assert "f.bin" not in await _folder_files(local)
        async with http.patch(url, data=b"k" * 10, headers={**TUS, "Upload-Offset": "0"}) as resp:
            assert resp.status == 204
    assert "f.bin" in await _folder_files(local)


async def test_dst_dir_is_fixed_by_the_token_or_the_first_request(
    local: Local, folder: str
) -> None:
    async with aiohttp.ClientSession() as http:
        # The token names the directory: another one in the URL is refused.
        covered = await _upload_url(local, 3, dst_dir="sub")
        elsewhere = covered.update_query(dst_dir="elsewhere")
        async with http.patch(elsewhere, data=b"abc", headers={**TUS, "Upload-Offset": "0"}) as r:
            assert r.status == 400 and "dst_dir" in await r.text()
        async with http.patch(covered, data=b"abc", headers={**TUS, "Upload-Offset": "0"}) as r:
            assert r.status == 204
        # The official client's way (dst_dir only in the URL): the first request decides.
        url = (await _upload_url(local, 4)).update_query(dst_dir="first")
        async with http.patch(url, data=b"ab", headers={**TUS, "Upload-Offset": "0"}) as r:
            assert r.status == 204
        moved = url.update_query(dst_dir="second")
        async with http.patch(moved, data=b"cd", headers={**TUS, "Upload-Offset": "2"}) as r:
            assert r.status == 400 and "dst_dir" in await r.text()
        async with http.patch(url, data=b"cd", headers={**TUS, "Upload-Offset": "2"}) as r:
            assert r.status == 204
    status, _, body = await _signed(local, "GET", "/folders/hostile/files?path=first")
    assert [i["name"] for i in body["items"]] == ["f.bin"]
    status, _, info = await _signed(
        local, "POST", "/folders/hostile/request-download", json={"path": "f.bin"}
    )
    download = URL(str(info["url"])).with_query(token=str(info["token"]), dst_dir="sub")
    async with aiohttp.ClientSession() as http, http.get(download) as resp:
        assert resp.status == 400


async def test_empty_suffix_range_is_416(local: Local, folder: str) -> None:
    url = await _upload_url(local, 5)
    async with aiohttp.ClientSession() as http:
        async with http.patch(url, data=b"hello", headers={**TUS, "Upload-Offset": "0"}) as r:
            assert r.status == 204
        status, _, info = await _signed(
            local, "POST", "/folders/hostile/request-download", json={"path": "f.bin"}
        )
        download = URL(str(info["url"])).with_query(token=str(info["token"]))
        async with http.get(download, headers={"Range": "bytes=-0"}) as resp:
            assert resp.status == 416 and resp.headers["Content-Range"] == "bytes */5"
        async with http.get(download, headers={"Range": "bytes=-2"}) as resp:
            assert resp.status == 206 and await resp.read() == b"lo"


async def test_v5_upload_without_multipart_body(make_local: Any) -> None:
    local: Local = await make_local(api_version="v5.20191215")
    try:
        status, _, _ = await _signed(
            local, "POST", "/folders", json={"name": "v5f"}, version="v5.20191215"
        )
        assert status == 201
        status, headers, _ = await _signed(
            local, "POST", "/folders/v5f/upload", data=b"plain", version="v5.20191215"
        )
        assert status == 400 and _is_problem(headers, status)
    finally:
        await local.server.close()


# -- runs and terminals -------------------------------------------------------------------------


async def test_new_run_keeps_an_unread_earlier_result(client: Client, session: str) -> None:
    path = f"/session/{session}"
    first = await client.http.json(
        "POST", path, json={"mode": "query", "run_id": "first-run",
                            "code": "import time; time.sleep(2.5); print('first')"},
    )
    assert first["result"]["status"] == "continued"  # the 2 s long-poll ended first
    second = await client.http.json(
        "POST", path, json={"mode": "query", "run_id": "second-run", "code": "print('second')"}
    )
    assert second["result"]["status"] == "finished"
    late = await client.http.json(
        "POST", path, json={"mode": "continue", "run_id": "first-run", "code": ""}
    )
    assert late["result"]["status"] == "finished"
    assert late["result"]["console"] == [["stdout", "first\n"]]


async def test_pty_survives_an_absurd_resize(client: Client, session: str) -> None:
    ws = await client.http.ws_connect(f"/stream/session/{session}/pty")
    try:
        for frame in (
            {"type": "resize", "rows": 70000, "cols": 80},
            {"type": "resize", "rows": -1, "cols": "x"},
            {"type": "resize"},
            {"type": "stdin", "chars": "!!not base64"},
        ):
            await ws.send_json(frame)
        cmd = base64.b64encode(b"echo alive-$((6*7))\n").decode()
        await ws.send_json({"type": "stdin", "chars": cmd})
        text = ""
        while "alive-42" not in text:
            msg = await ws.receive(timeout=20)
            assert msg.kind != "closed", text
            text += base64.b64decode(msg.json()["data"]).decode(errors="replace")
    finally:
        await ws.close()


@pytest.mark.parametrize(
    "extra,kind,code",
    [
        # the two shapes a 26.9.6 manager answers (observed on the test cluster)
        ({"maxWaitSeconds": "abc"}, "generic-bad-request", "api_parsing_invalid-parameters"),
        ({"type": "batch", "startupCommand": 5}, "generic-bad-request", "api_parsing_invalid-parameters"),
        ({"config": {"mounts": [1]}}, "invalid-api-params", "api_generic_invalid-parameters"),
    ],
)
async def test_create_validation_answers_like_26_9_6(
    local: Local, extra: dict[str, Any], kind: str, code: str | None
) -> None:
    body = {"image": IMAGE, "name": "valid-name", **extra}
    status, _, problem = await _signed(local, "POST", "/session", json=body)
    assert status == 400 and str(problem["type"]).endswith("/" + kind)
    assert problem["error_code"] == code
    if kind == "generic-bad-request":
        assert problem["title"] == "Invalid or Missing API Parameters."
    else:
        assert problem["msg"] == "Input validation error" and "config" in problem["data"]
