"""Request authentication exactly as the manager does it (protocol.md §1.2, cluster-facts §1).

HMAC: the signature is recomputed with the *client's* pure functions
(:func:`~backendai_jupyter.client._auth.string_to_sign`, :func:`signing_key`,
:func:`parse_authorization`) over the raw ``Date`` header text, ``request.raw_path``, the
``Host`` header and ``request.content_type`` — so client and server can never disagree on the
algorithm. Order and answers follow a 26.9.6 manager: no ``Authorization`` → 401 "Unauthorized
access"; clock skew > 15 min → 400; malformed header → 400; unknown key / bad signature → 401.

Session mode (the webserver's ``/server/login`` + ``/func/...``) keeps logins in memory under an
``AIOHTTP_SESSION`` cookie, like the webserver's aiohttp_session storage.

Rate limits follow the real components (26.9.6 ``rlim_middleware``): a fixed 15-minute window per
user for signed requests (limit: the keypair's ``rate_limit``), one per client address for
anonymous manager requests (limit 1000), nothing for the storage proxy's token routes or the
webserver's own routes; unmatched URLs and failed signatures are not counted (no headers). The
webserver throttles failed logins per user name (10 within 20 minutes → 429).
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

from ...client._auth import parse_authorization, signing_key, string_to_sign
from ...client._versioning import MIN_API_VERSION, ApiVersion, parse_api_version
from .access import Access, access_of
from .errors import Problem, read_json
from .state import CONFIG, KEYPAIRS, Keypair

__all__ = [
    "ACCESS_KEY",
    "API_VERSION",
    "LOGINS",
    "LOGIN_FAILURES",
    "RATELIMIT",
    "RATELIMITS",
    "auth_middleware",
    "count_anonymous",
    "count_user",
    "verify_hmac",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COOKIE = "AIOHTTP_SESSION"
CLOCK_SKEW = timedelta(minutes=15)
RL_WINDOW = 900
ANON_LIMIT = 1000
# The webserver's login_allowed_fail_count / login_block_time defaults.
LOGIN_ALLOWED_FAILS = 10
LOGIN_BLOCK_TIME = 1200.0

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
#: user name → [last failed attempt (time.time()), failures]
LOGIN_FAILURES: web.AppKey[dict[str, list[float]]] = web.AppKey("bjup_login_failures", dict)


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
    if not _same(expected, signature):
        raise _problem_auth("HMAC signature mismatch")
    return keypair


def _same(expected: str, given: object) -> bool:
    """Constant-time comparison that treats any non-ASCII or non-text input as a mismatch
    (``hmac.compare_digest`` raises ``TypeError`` on non-ASCII ``str``)."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def _consume(request: web.Request, bucket: str, limit: int) -> None:
    """One request in a fixed 15-minute window opened by the bucket's first request; the limit
    is fixed when the window opens (Valkey ``HSETNX`` + ``EXPIRE NX`` upstream)."""
    now = time.time()
    windows = request.app[RATELIMITS]
    window = windows.get(bucket)
    if window is None or now - window[0] >= RL_WINDOW:
        window = windows[bucket] = [now, 0.0, float(limit)]
    window[1] += 1
    count, fixed = int(window[1]), int(window[2])
    reset = max(0, int(RL_WINDOW - (now - window[0])))
    request[RATELIMIT] = (fixed, max(0, fixed - count), reset)
    if count > fixed:
        raise Problem(429, "rate-limit-exceeded", "Rate limit exceeded.")


def count_anonymous(request: web.Request) -> None:
    """An anonymous manager request: the client address's window."""
    _consume(request, f"ip:{request.remote}", ANON_LIMIT)


def count_user(request: web.Request, keypair: Keypair) -> None:
    """A signed (or webserver-proxied) request: the user's window."""
    _consume(request, f"user:{keypair.user_id}", keypair.rate_limit)


def _check_version(request: web.Request) -> ApiVersion:
    header = request.headers.get("X-BackendAI-Version") or request.headers.get("X-Sorna-Version")
    if header is None:
        return MIN_API_VERSION  # no header: the oldest dialect
    if header not in request.app[CONFIG].features.accepted_versions:
        raise Problem(400, "generic-bad-request", "Bad request.", "Unsupported API version.")
    return parse_api_version(header)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API-version check, then authentication and rate limits by the route's access kind."""
    request[API_VERSION] = _check_version(request)
    access = access_of(request.app, request.match_info.route)
    if access is None or access in (Access.STORAGE, Access.WEBSERVER):
        return await handler(request)  # no route, the storage proxy, or the webserver
    if access is Access.ANONYMOUS:
        count_anonymous(request)
        return await handler(request)
    if not request.headers.get("Authorization"):
        count_anonymous(request)
    date_first = not request.app[CONFIG].features.has("auth_header_before_date")
    keypair = verify_hmac(request, request.app[KEYPAIRS], date_first=date_first)
    request[ACCESS_KEY] = keypair.access_key
    count_user(request, keypair)
    return await handler(request)


# -- /auth and session mode ------------------------------------------------------------------


async def auth_test(request: web.Request) -> web.Response:
    """``GET|POST /auth`` — 26.9.6 answers ``echo: ""`` when the echo came in the query string."""
    echo = ""
    if request.can_read_body:
        body = await read_json(request)
        echo = body.get("echo", "") if isinstance(body, dict) else ""
    return web.json_response({"authorized": "yes", "echo": echo})


def _user_data(kp: Keypair) -> dict[str, Any]:
    return {"access_key": kp.access_key, "role": kp.role, "status": "active"}


def _login_blocked(request: web.Request, username: str) -> bool:
    failures = request.app[LOGIN_FAILURES].get(username)
    if failures is None:
        return False
    if time.time() - failures[0] >= LOGIN_BLOCK_TIME:
        del request.app[LOGIN_FAILURES][username]
        return False
    return failures[1] >= LOGIN_ALLOWED_FAILS


def _login_failed(request: web.Request, username: str) -> None:
    failures = request.app[LOGIN_FAILURES].setdefault(username, [0.0, 0.0])
    failures[0] = time.time()
    failures[1] += 1


async def login(request: web.Request) -> web.Response:
    logins = request.app[LOGINS]
    if request.cookies.get(COOKIE) in logins:
        raise Problem(400, "generic-bad-request", "Bad request.", "You have already logged in.")
    body = await read_json(request)
    if not isinstance(body, dict) or not body.get("username") or not body.get("password"):
        raise Problem(
            400,
            "invalid-api-params",
            "Missing or invalid API parameters.",
            "username and password are required",
        )
    username, password = body["username"], body["password"]
    if not isinstance(username, str) or not isinstance(password, str):
        raise Problem(
            400,
            "invalid-api-params",
            "Missing or invalid API parameters.",
            "username and password must be strings",
        )
    if _login_blocked(request, username):
        # The webserver's answer (web/server.py login_handler).
        body = {
            "type": "https://api.backend.ai/probs/too-many-requests",
            "title": "Too many failed login attempts",
        }
        return web.Response(
            status=429, text=json.dumps(body), content_type="application/problem+json"
        )
    for kp in request.app[KEYPAIRS].values():
        user_ok = username in (kp.user_email, kp.access_key)
        pw_ok = bool(kp.password) and _same(kp.password, password)
        if user_ok and (pw_ok or _same(kp.secret_key, password)):
            request.app[LOGIN_FAILURES].pop(username, None)
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
    _login_failed(request, username)
    return web.json_response({"authenticated": False, "data": data}, status=401)


async def logout(request: web.Request) -> web.Response:
    request.app[LOGINS].pop(request.cookies.get(COOKIE, ""), None)
    ok_200 = request.app[CONFIG].features.has("logout_ok_200")
    resp = web.Response(status=200 if ok_200 else 201)
    resp.del_cookie(COOKIE)
    return resp


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
