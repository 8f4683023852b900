"""Request authentication exactly as the manager does it (protocol.md §1.2, cluster-facts §1).

HMAC: the signature is recomputed with the *client's* pure functions
(:func:`~backendai_jupyter.client._auth.string_to_sign`, :func:`signing_key`,
:func:`parse_authorization`) over the raw ``Date`` header text, ``request.raw_path``, the
``Host`` header and ``request.content_type`` — so client and server can never disagree on the
algorithm. Order and answers follow a 26.9.6 manager: no ``Authorization`` → 401 "Unauthorized
access"; clock skew > 15 min → 400; malformed header → 400; unknown key / bad signature → 401.

Session mode (the webserver's ``/server/login`` + ``/func/...``) keeps logins in memory under an
``AIOHTTP_SESSION`` cookie, like the webserver's aiohttp_session storage.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..client._auth import parse_authorization, signing_key, string_to_sign
from ..client._versioning import ApiVersion, parse_api_version
from .errors import Problem, malformed_body
from .state import CONFIG, KEYPAIRS, Keypair

__all__ = [
    "ACCESS_KEY",
    "API_VERSION",
    "RATELIMIT",
    "LOGINS",
    "RATELIMITS",
    "accepted_versions",
    "auth_middleware",
    "public",
    "routes",
    "verify_hmac",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COOKIE = "AIOHTTP_SESSION"
CLOCK_SKEW = timedelta(minutes=15)
RL_WINDOW = 900
ANON_LIMIT = 1000

# 26.9.6 VALID_VERSIONS (v6.20210815 is *not* accepted there); 25.6 and older list it instead of
# v6.20221201.
_VERSIONS_26 = (
    "v4.20181215 v4.20190115 v4.20190315 v4.20190615 v5.20191215 v6.20200815 v6.20220315 "
    "v6.20220615 v6.20221201 v6.20230315 v7.20230615 v8.20240315 v8.20240915 v9.20250722"
).split()
_VERSIONS_OLD = [v for v in _VERSIONS_26 if v != "v6.20221201"] + ["v6.20210815"]

# Request storage keys. aiohttp 3.14 introduced ``web.RequestKey`` (and warns about plain string
# keys); older versions get the same names as strings.
if TYPE_CHECKING or hasattr(web, "RequestKey"):
    ACCESS_KEY: web.RequestKey[str] = web.RequestKey("bjup_access_key", str)
    API_VERSION: web.RequestKey[ApiVersion] = web.RequestKey("bjup_api_version", tuple)
    RATELIMIT: web.RequestKey[tuple[int, int, int]] = web.RequestKey("bjup_ratelimit", tuple)
else:  # pragma: no cover - aiohttp < 3.14
    ACCESS_KEY, API_VERSION, RATELIMIT = "access_key", "bjup_api_version", "bjup_ratelimit"

LOGINS: web.AppKey[dict[str, str]] = web.AppKey("bjup_logins", dict)
RATELIMITS: web.AppKey[dict[str, list[float]]] = web.AppKey("bjup_ratelimits", dict)


def public(handler: Handler) -> Handler:
    """Mark a handler as anonymous (the manager's handlers without ``auth_required``)."""
    handler.__bjup_public__ = True  # type: ignore[attr-defined]
    return handler


def accepted_versions(emulated: str) -> set[str]:
    top = parse_api_version(emulated)
    pool = _VERSIONS_26 if top >= (9, "20250722") else _VERSIONS_OLD
    return {v for v in pool if parse_api_version(v) <= top}


def _problem_auth(msg: str) -> Problem:
    return Problem(401, "auth-failed", "Credential/signature mismatch.", msg)


def _problem_params(msg: str) -> Problem:
    return Problem(400, "invalid-auth-params", "Missing or invalid authorization parameters.", msg)


def _parse_date(raw: str) -> datetime | None:
    """ISO 8601 (what the clients send) or RFC 1123 (HTTP dates) — what dateutil accepts there."""
    try:
        return datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None


def _check_date(request: web.Request) -> tuple[str, datetime]:
    raw = request.headers.get("Date") or request.headers.get("X-BackendAI-Date") or ""
    raw = raw or request.headers.get("X-Sorna-Date", "")
    date = _parse_date(raw)
    if date is None:
        raise _problem_params("Date/time sync error")
    if date.tzinfo is None:
        date = date.replace(tzinfo=timezone.utc)
    now = datetime.now(timezone.utc)
    if not now - CLOCK_SKEW < date < now + CLOCK_SKEW:
        raise _problem_params("Date/time sync error")
    return raw, date


def verify_hmac(request: web.Request, keypairs: dict[str, Keypair], *, date_first: bool) -> Keypair:
    """Return the request's keypair or raise the manager's Problem."""
    header = request.headers.get("Authorization")
    if date_first:
        raw_date, date = _check_date(request)
    if not header:
        raise _problem_auth("Unauthorized access")
    if not date_first:
        raw_date, date = _check_date(request)
    try:
        hash_type, access_key, signature = parse_authorization(header)
    except ValueError as e:
        raise _problem_params(str(e)) from None
    if "X-BackendAI-Version" in request.headers:
        version, version_name = request.headers["X-BackendAI-Version"], "x-backendai-version"
    elif "X-Sorna-Version" in request.headers:
        version, version_name = request.headers["X-Sorna-Version"], "x-sorna-version"
    else:
        raise _problem_params("API version missing in request headers")
    keypair = keypairs.get(access_key)
    if keypair is None:
        raise _problem_auth("Access key not found in HMAC")
    to_sign = string_to_sign(
        method=request.method,
        rel_url=request.raw_path,
        date_header=raw_date,
        host=request.host,
        content_type=request.content_type,
        api_version=version,
        hash_type=hash_type,
        version_header_name=version_name,
    )
    key = signing_key(keypair.secret_key, date, request.host, hash_type)
    expected = hmac.new(key, to_sign, hash_type).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise _problem_auth("HMAC signature mismatch")
    return keypair


def _count(request: web.Request, bucket: str, limit: int) -> None:
    """Rolling 15-minute window per access key (anonymous requests share one per client IP)."""
    now = time.time()
    window = request.app[RATELIMITS].setdefault(bucket, [now, 0.0])
    if now - window[0] >= RL_WINDOW:
        window[0], window[1] = now, 0.0
    window[1] += 1
    remaining = int(limit - window[1])
    reset = int(RL_WINDOW - (now - window[0]))
    request[RATELIMIT] = (limit, max(0, remaining), reset)
    if remaining < 0:
        raise Problem(429, "rate-limit-exceeded", "Rate limit exceeded.")


def _check_version(request: web.Request) -> ApiVersion:
    header = request.headers.get("X-BackendAI-Version") or request.headers.get("X-Sorna-Version")
    if header is None:
        return (5, "20191215")
    if header not in accepted_versions(request.app[CONFIG].api_version):
        raise Problem(400, "generic-bad-request", "Bad request.", "Unsupported API version.")
    return parse_api_version(header)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API-version check, then authentication for every non-public route, then rate limits."""
    request[API_VERSION] = _check_version(request)
    route_handler = request.match_info.handler
    anonymous = (
        getattr(route_handler, "__bjup_public__", False) or request.match_info.http_exception
    )
    if anonymous:
        _count(request, "anon:" + str(request.remote), ANON_LIMIT)
        return await handler(request)
    emulated = parse_api_version(request.app[CONFIG].api_version)
    if not request.headers.get("Authorization"):
        _count(request, "anon:" + str(request.remote), ANON_LIMIT)
    keypair = verify_hmac(request, request.app[KEYPAIRS], date_first=emulated < (6, "20200815"))
    request[ACCESS_KEY] = keypair.access_key
    _count(request, keypair.access_key, keypair.rate_limit)
    return await handler(request)


# -- /auth and session mode ------------------------------------------------------------------


async def auth_test(request: web.Request) -> web.Response:
    """``GET|POST /auth`` — 26.9.6 answers ``echo: ""`` when the echo came in the query string."""
    echo = ""
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError:
            raise malformed_body() from None
        echo = body.get("echo", "") if isinstance(body, dict) else ""
    return web.json_response({"authorized": "yes", "echo": echo})


def _user_data(kp: Keypair) -> dict[str, Any]:
    return {"access_key": kp.access_key, "role": kp.role, "status": "active"}


@public
async def login(request: web.Request) -> web.Response:
    logins = request.app[LOGINS]
    if request.cookies.get(COOKIE) in logins:
        raise Problem(400, "generic-bad-request", "Bad request.", "You have already logged in.")
    try:
        body = await request.json()
    except ValueError:
        raise malformed_body() from None
    if not isinstance(body, dict) or not body.get("username") or not body.get("password"):
        raise Problem(
            400,
            "invalid-api-params",
            "Missing or invalid API parameters.",
            "username and password are required",
        )
    for kp in request.app[KEYPAIRS].values():
        user_ok = body["username"] in (kp.user_email, kp.access_key)
        pw_ok = bool(kp.password) and hmac.compare_digest(str(body["password"]), kp.password)
        if user_ok and (pw_ok or hmac.compare_digest(str(body["password"]), kp.secret_key)):
            token = secrets.token_urlsafe(24)
            logins[token] = kp.access_key
            resp = web.json_response({"authenticated": True, "data": _user_data(kp)})
            resp.set_cookie(COOKIE, token, httponly=True, samesite="Lax")
            return resp
    data = {
        "type": "https://api.backend.ai/probs/auth-failed",
        "title": "Credential/signature mismatch.",
        "details": "User credential mismatch.",
    }
    return web.json_response({"authenticated": False, "data": data}, status=401)


@public
async def logout(request: web.Request) -> web.Response:
    request.app[LOGINS].pop(request.cookies.get(COOKIE, ""), None)
    old = parse_api_version(request.app[CONFIG].api_version) < (6, "20200815")
    resp = web.Response(status=201 if old else 200)
    resp.del_cookie(COOKIE)
    return resp


@public
async def login_check(request: web.Request) -> web.Response:
    token = request.cookies.get(COOKIE, "")
    ak = request.app[LOGINS].get(token)
    kp = request.app[KEYPAIRS].get(ak) if ak else None
    return web.Response(
        text=json.dumps(
            {
                "authenticated": kp is not None,
                "data": _user_data(kp) if kp else None,
                "session_id": token if kp else None,
            }
        ),
        content_type="application/json",
    )


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/auth", auth_test),
        ("POST", "/auth", auth_test),
        ("GET", "/auth/test", auth_test),
        ("POST", "/auth/test", auth_test),
        ("POST", "/server/login", login),
        ("POST", "/server/logout", logout),
        ("POST", "/server/login-check", login_check),
    ]
