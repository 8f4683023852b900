"""``create_app(config)``: the local Backend.AI endpoint as one aiohttp application.

Tests (``aiohttp.test_utils.TestServer``) and ``backendai-jupyter serve`` build the same app.
Middlewares, outermost first: errors → problem+json (never a traceback), then the API-version
check and HMAC authentication (``auth.py``). ``on_response_prepare`` stamps ``Server: BackendAI``
and the ``X-RateLimit-*`` headers on every answer, streams included.

Version emulation (``ServerConfig.api_version``) changes what ``GET /`` reports, which version
headers are accepted, which routes exist (``/admin/gql`` from v6.20210815, ``POST`` download from
v8.20240915, ``rename`` from v6.20220315) and the event names (``events.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..client._problem import problem_body
from ..client._versioning import parse_api_version
from . import auth, events, execute, sessions
from .errors import Problem
from .events import EventBus
from .scheduler import Scheduler, detect_capacity
from .state import (
    CONFIG,
    EVENTS,
    KEYPAIRS,
    REGISTRY,
    SCHEDULER,
    Registry,
    ServerConfig,
    load_or_create_keypair,
)

__all__ = ["create_app"]

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Which manager release answered each API version (reported by GET /).
_RELEASES = {
    (9, "20250722"): "26.9.6",
    (8, "20240915"): "24.09.0",
    (8, "20240315"): "24.03.0",
    (7, "20230615"): "23.09.0",
    (6, "20230315"): "23.03.0",
    (6, "20220615"): "22.09.0",
    (6, "20220315"): "22.03.0",
    (6, "20210815"): "21.09.0",
    (6, "20200815"): "20.09.0",
    (5, "20191215"): "20.03.0",
}
_ERROR_CODES = {
    "auth-failed": "user_auth_unauthorized",
    "invalid-auth-params": "user_auth_invalid-parameters",
    "generic-bad-request": "backendai_generic_bad-request",
    "invalid-api-params": "api_parsing_invalid-parameters",
    "entity-not-found": "session_read_not-found",
    "url-not-found": "api_read_not-found",
    "method-not-allowed": "api_generic_method-not-allowed",
    "session-already-exists": "session_create_already-exists",
    "rate-limit-exceeded": "api_generic_rate-limit-exceeded",
    "internal-server-error": "backendai_generic_internal-error",
}
_TAKES_BODY_ERR = "Malformed request body."


def _problem(p: Problem) -> web.Response:
    """The manager's problem+json body: ``type, title, error_code, msg, data``."""
    base = problem_body(p.slug, p.title, p.msg, p.data)
    body: dict[str, Any] = {"type": base["type"], "title": base["title"]}
    code = _ERROR_CODES.get(p.slug)
    if p.title == _TAKES_BODY_ERR:
        code = "api_parsing_bad-request"
    if code:
        body["error_code"] = code
    body.update({k: v for k, v in base.items() if k in ("msg", "data")})
    return web.Response(
        status=p.status, text=json.dumps(body), content_type="application/problem+json"
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as p:
        return _problem(p)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        if e.status == 404:
            return _problem(Problem(404, "url-not-found", "Unknown URL path.", data=request.path))
        if e.status == 405:
            return _problem(Problem(405, "method-not-allowed", "Method not allowed."))
        if e.status == 413:
            return _problem(Problem(413, "generic-bad-request", "Request entity too large."))
        return _problem(Problem(e.status, "generic-bad-request", "Bad request.", e.reason))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _problem(Problem(500, "internal-server-error", "Something has gone wrong."))


async def _stamp_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "BackendAI"
    limits = request.get(auth.RATELIMIT)
    if limits is not None:
        limit, remaining, reset = limits
        response.headers["X-RateLimit-Limit"] = str(limit)
        response.headers["X-RateLimit-Remaining"] = str(remaining)
        response.headers["X-RateLimit-Reset"] = str(reset)
        response.headers["X-RateLimit-Window"] = str(auth.RL_WINDOW)


@auth.public
async def hello(request: web.Request) -> web.Response:
    """Unsigned ``GET /``: the version probe every client starts with."""
    version = request.app[CONFIG].api_version
    release = _RELEASES.get(parse_api_version(version), "26.9.6")
    return web.json_response({"version": version, "manager": f"{release}-local"})


@auth.public
async def func_proxy(request: web.Request) -> web.StreamResponse:
    """Session mode: ``/func/<path>`` runs the handler of ``/<path>`` for the logged-in user
    (the webserver's proxy, minus the network hop). ``GET /func/`` is the anonymous probe."""
    tail = request.match_info["tail"]
    if not tail.strip("/"):
        if request.method == "GET":
            return await hello(request)
        raise web.HTTPNotFound()
    access_key = request.app[auth.LOGINS].get(request.cookies.get(auth.COOKIE, ""))
    if access_key is None:
        raise Problem(401, "auth-failed", "Credential/signature mismatch.", "Unauthorized access")
    rel = "/" + tail + (f"?{request.query_string}" if request.query_string else "")
    inner = request.clone(rel_url=rel)
    match = await request.app.router.resolve(inner)
    if match.http_exception is not None:
        raise match.http_exception
    match.add_app(request.app)
    # aiohttp's own dispatcher assigns the match the same way (web_app._handle).
    inner._match_info = match
    inner[auth.ACCESS_KEY] = access_key
    return await match.handler(inner)


def _route_exists(method: str, path: str, version: tuple[int, str]) -> bool:
    if path == "/session/{session_name}/download":
        return (method == "POST") == (version >= (8, "20240915"))
    if path == "/session/{session_name}/rename":
        return version >= (6, "20220315")
    if path == "/admin/gql":
        return version >= (6, "20210815")
    return True


def create_app(config: ServerConfig) -> web.Application:
    """Build the application; state goes into ``web.AppKey``s (``state.py``)."""
    app = web.Application(
        middlewares=[error_middleware, auth.auth_middleware], client_max_size=64 * 1024**2
    )
    auth.accepted_versions(config.api_version)  # validates the emulated version early
    version = parse_api_version(config.api_version)
    keypair = config.keypair
    if keypair is None:
        keypair, _ = load_or_create_keypair(config.data_dir)
        config.keypair = keypair
    config.sessions_dir.mkdir(parents=True, exist_ok=True)
    app[CONFIG] = config
    app[KEYPAIRS] = {keypair.access_key: keypair}
    app[REGISTRY] = Registry()
    app[EVENTS] = EventBus()
    app[SCHEDULER] = Scheduler(app, detect_capacity(config.capacity))
    app[auth.LOGINS] = {}
    app[auth.RATELIMITS] = {}

    table: list[tuple[str, str, Any]] = [("GET", "/", hello)]
    table += auth.routes() + sessions.routes() + execute.routes() + events.routes()
    table += [("POST", "/admin/gql", sessions.gql_handler)]
    table += [("POST", "/admin/graphql", sessions.gql_handler)]
    for method, path, handler in table:
        if _route_exists(method, path, version):
            app.router.add_route(method, path, handler)
    for module in ("folders", "userconfig", "appproxy"):  # written separately; optional
        try:
            mod = __import__(f"{__package__}.{module}", fromlist=["setup"])
        except ImportError:
            continue
        mod.setup(app)
    app.router.add_route("*", "/func/{tail:.*}", func_proxy)
    app.on_response_prepare.append(_stamp_headers)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    return app


async def _on_startup(app: web.Application) -> None:
    app[SCHEDULER].start()


async def _on_shutdown(app: web.Application) -> None:
    """Stop every session process before the server goes away (no orphans)."""
    app[EVENTS].close_all()
    await app[SCHEDULER].shutdown()
