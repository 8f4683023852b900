"""Rate limits as the real components do them (26.9.6 ``rlim_middleware``, the webserver's login
throttle): a window per user for signed requests, one per client address for anonymous manager
requests, none for the storage proxy's token transfers or unmatched URLs."""

from __future__ import annotations

from typing import Any

import aiohttp

from backendai_jupyter.server.manager.state import KEYPAIRS, Keypair

from .conftest import Local
from .test_basics import _signed


async def _anon_remaining(local: Local) -> int:
    async with aiohttp.ClientSession() as http, http.get(local.url + "/") as resp:
        assert resp.status == 200
        return int(resp.headers["X-RateLimit-Remaining"])


async def test_storage_proxy_transfers_do_not_count_as_anonymous(local: Local) -> None:
    client = local.client()
    await client.folders.create("rl")
    status, _, info = await _signed(
        local, "POST", "/folders/rl/request-upload", json={"path": "a.txt", "size": 0}
    )
    assert status == 200
    status, _, info = await _signed(
        local, "POST", "/folders/rl/request-download", json={"path": "a.txt"}
    )
    assert status == 200
    before = await _anon_remaining(local)
    async with aiohttp.ClientSession() as http:
        for _ in range(20):
            async with http.get(str(info["url"]), params={"token": str(info["token"])}) as resp:
                assert resp.status == 200
                assert "X-RateLimit-Limit" not in resp.headers
    assert await _anon_remaining(local) == before - 1  # only the probe itself


async def test_unknown_url_is_not_counted(local: Local) -> None:
    async with aiohttp.ClientSession() as http, http.get(local.url + "/no/such/url") as resp:
        assert resp.status == 404
        assert "X-RateLimit-Limit" not in resp.headers


async def test_per_user_window_leaves_anonymous_requests_alone(make_local: Any) -> None:
    kp = Keypair("AKIALIMITEDLIMITED00", "limited-secret", password="pw-limited", rate_limit=3)
    local: Local = await make_local(keypair=kp)
    try:
        for left in (2, 1, 0):
            status, headers, _ = await _signed(local)
            assert status == 200 and headers["X-RateLimit-Remaining"] == str(left)
            assert headers["X-RateLimit-Limit"] == "3"
        status, headers, body = await _signed(local)
        assert status == 429 and str(body["type"]).endswith("/rate-limit-exceeded")
        assert await _anon_remaining(local) > 0  # the version probe still answers
        # session mode: the webserver's proxied requests count in the same user window
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            login = {"username": kp.user_email, "password": kp.password}
            async with http.post(local.url + "/server/login", json=login) as resp:
                assert resp.status == 200
            async with http.get(local.url + "/func/auth") as resp:
                assert resp.status == 429
    finally:
        await local.server.close()


async def test_failed_logins_are_throttled_per_user(local: Local) -> None:
    kp = local.app[KEYPAIRS][local.access_key]
    url = local.url + "/server/login"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for _ in range(10):
            bad = {"username": kp.user_email, "password": "wrong"}
            async with http.post(url, json=bad) as resp:
                assert resp.status == 401
        good = {"username": kp.user_email, "password": kp.password}
        async with http.post(url, json=good) as resp:
            assert resp.status == 429
            assert resp.content_type == "application/problem+json"
            body = await resp.json()
            assert body["title"] == "Too many failed login attempts"
        # another user name (the access key) is not blocked; the manager API is not either
        by_key = {"username": kp.access_key, "password": kp.password}
        async with http.post(url, json=by_key) as resp:
            assert resp.status == 200
    status, _, _ = await _signed(local)
    assert status == 200
