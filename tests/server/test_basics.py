"""Version probe, signing failures, problem+json errors, session mode."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from backendai_jupyter.client import AuthError, BadRequestError
from backendai_jupyter.client._auth import sign_request
from backendai_jupyter.server.manager.state import KEYPAIRS

from .conftest import Local


async def _signed(
    local: Local,
    method: str = "GET",
    path: str = "/auth?echo=x",
    *,
    secret: str | None = None,
    date: datetime | None = None,
    version: str = "v9.20250722",
    **kw: object,
) -> tuple[int, dict[str, str], dict[str, object]]:
    host = local.url.split("//", 1)[1]
    headers = sign_request(
        method=method,
        rel_url=path,
        date=date or datetime.now(timezone.utc),
        host=host,
        content_type="text/plain",
        api_version=version,
        access_key=local.access_key,
        secret_key=secret or local.secret_key,
    )
    headers["Content-Type"] = "text/plain"
    async with aiohttp.ClientSession() as http:
        async with http.request(method, local.url + path, headers=headers, **kw) as resp:  # type: ignore[arg-type]
            return resp.status, dict(resp.headers), await resp.json(content_type=None)


async def test_version_probe(local: Local) -> None:
    async with aiohttp.ClientSession() as http, http.get(local.url + "/") as resp:
        assert resp.status == 200
        assert resp.headers["Server"] == "BackendAI"
        assert resp.headers["X-RateLimit-Window"] == "900"
        body = await resp.json()
    assert body["version"] == "v9.20250722"
    assert body["manager"].startswith("26.9.6")


async def test_signed_ok_and_rate_headers(local: Local) -> None:
    status, headers, body = await _signed(local)
    assert status == 200 and body == {"authorized": "yes", "echo": ""}
    assert headers["X-RateLimit-Limit"] == "10000"
    assert int(headers["X-RateLimit-Remaining"]) < 10000


async def test_wrong_secret_401(local: Local) -> None:
    status, headers, body = await _signed(local, secret="x" * 40)
    assert status == 401
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["type"] == "https://api.backend.ai/probs/auth-failed"
    assert body["title"] == "Credential/signature mismatch."
    assert body["msg"] == "HMAC signature mismatch"
    assert "X-RateLimit-Limit" not in headers


async def test_clock_skew_400(local: Local) -> None:
    old = datetime.now(timezone.utc) - timedelta(minutes=20)
    status, _, body = await _signed(local, date=old)
    assert status == 400
    assert body["type"].endswith("/invalid-auth-params")
    assert body["msg"] == "Date/time sync error"


async def test_missing_authorization_401(local: Local) -> None:
    async with aiohttp.ClientSession() as http, http.get(local.url + "/auth") as resp:
        assert resp.status == 401
        body = await resp.json(content_type=None)
    assert body["msg"] == "Unauthorized access"


async def test_unsupported_version_400(local: Local) -> None:
    status, _, body = await _signed(local, version="v6.20210815")
    assert status == 400
    assert body["msg"] == "Unsupported API version."
    assert body["type"].endswith("/generic-bad-request")


async def test_client_wrong_secret_raises(local: Local) -> None:
    client = local.client(secret_key="y" * 40)
    with pytest.raises(AuthError):
        await client.check_auth()


async def test_unknown_route_404_problem(local: Local) -> None:
    status, headers, body = await _signed(local, path="/nonexistent-route")
    assert status == 404
    assert body["type"].endswith("/url-not-found") and body["data"] == "/nonexistent-route"


async def test_bad_json_400(local: Local) -> None:
    status, headers, body = await _signed(local, "POST", "/session", data=b"{not json")
    assert status == 400
    assert headers["Content-Type"].startswith("application/problem+json")
    assert "Malformed" in str(body["msg"])


async def test_bad_create_params_400(local: Local) -> None:
    client = local.client()
    with pytest.raises(BadRequestError):
        await client.sessions.create("img", name="x")  # too-short name


async def test_session_mode_login(local: Local) -> None:
    kp = local.app[KEYPAIRS][local.access_key]
    kp_email, password = kp.user_email, kp.password
    # unsafe=True: aiohttp's jar ignores cookies of IP-address hosts otherwise.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(local.url + "/func/session/x") as resp:
            assert resp.status == 401
        async with http.post(
            local.url + "/server/login", json={"username": kp_email, "password": password}
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["authenticated"] is True
        async with http.get(local.url + "/func/") as resp:
            assert (await resp.json())["version"] == "v9.20250722"
        async with http.get(local.url + "/func/auth") as resp:
            assert resp.status == 200 and (await resp.json())["authorized"] == "yes"
        async with http.get(local.url + "/func/session/nope") as resp:
            assert resp.status == 404
        async with http.post(local.url + "/server/logout") as resp:
            assert resp.status == 200
        async with http.get(local.url + "/func/auth") as resp:
            assert resp.status == 401


async def test_v5_emulation_routes(make_local: object) -> None:
    local: Local = await make_local(api_version="v5.20191215")  # type: ignore[operator]
    try:
        status, _, body = await _signed(local, "POST", "/admin/gql", version="v5.20191215")
        assert status == 404
        client = local.client()
        assert await client.sessions.list() == []
        assert client.features.gql_path == "/admin/graphql"
        status, _, body = await _signed(local, version="v9.20250722")
        assert status == 400
    finally:
        for c in local.clients:
            await c.close()
        await local.server.close()


async def test_client_session_mode_login_logout(local: Local) -> None:
    from backendai_jupyter.client import AuthError, Client, ClientConfig, parse_endpoints

    kp = local.app[KEYPAIRS][local.access_key]
    config = ClientConfig(endpoints=parse_endpoints(local.url), endpoint_type="session")
    async with Client(config) as client:
        with pytest.raises(AuthError) as info:
            await client.login(kp.user_email, "wrong-password")
        assert "\n" not in str(info.value) and "wrong-password" not in str(info.value)
        with pytest.raises(AuthError):
            await client.sessions.list()  # not logged in: /func/ answers 401
        await client.login(kp.user_email, kp.password)
        assert await client.login_check()
        assert await client.sessions.list() == []
        await client.logout()
        with pytest.raises(AuthError):
            await client.sessions.list()
