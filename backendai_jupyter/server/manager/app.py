"""``create_app(config)``: the local Backend.AI endpoint as one aiohttp application.

Tests (``aiohttp.test_utils.TestServer``) and ``backendai-jupyter serve`` build the same app.
Middlewares, outermost first: errors → problem+json (never a traceback), then the API-version
check and HMAC authentication (``auth.py``). ``on_response_prepare`` stamps ``Server: BackendAI``
and the ``X-RateLimit-*`` headers on every answer, streams included.

Routes come from the one table in ``routes.py``. Version emulation (``ServerConfig.api_version``)
reads the version table shared with the client (``client/_versioning.py``): what ``GET /``
reports, which version headers are accepted, which routes exist, the event names.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ...client._problem import problem_body
from ..agent.services import SERVICES, ServiceManager
from ..storage import FOLDER_STORE, FolderStore, local_transfer
from . import auth
from .appconnect import connect
from .errors import SCHEMA_TITLE, Problem
from .events import EVENTS, EventBus
from .local_socket import LOCAL_SOCKET, LocalSocket, local_socket_ctx
from .routes import register_routes
from .scheduler import SCHEDULER, Scheduler, detect_capacity
from .state import CONFIG, KEYPAIRS, REGISTRY, Registry, ServerConfig, load_or_create_keypair
from .userconfig import USER_CONFIG, UserConfigStore

__all__ = ["create_app"]

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_ERROR_CODES = {
    "auth-failed": "user_auth_unauthorized",
    "invalid-auth-params": "user_auth_invalid-parameters",
    "generic-bad-request": "backendai_generic_bad-request",
    "invalid-api-params": "api_generic_invalid-parameters",  # as 26.9.6 (config errors)
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
    elif p.title == SCHEMA_TITLE:
        code = "api_parsing_invalid-parameters"
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


def create_app(config: ServerConfig) -> web.Application:
    """Build the application; state goes into ``web.AppKey``s (``state.py``)."""
    app = web.Application(
        middlewares=[error_middleware, auth.auth_middleware], client_max_size=64 * 1024**2
    )
    features = config.features  # validates the emulated version early
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
    app[FOLDER_STORE] = FolderStore(app)
    app[USER_CONFIG] = UserConfigStore(app)
    app[SERVICES] = ServiceManager()
    app[LOCAL_SOCKET] = LocalSocket(app, {
        "upload": local_transfer.upload, "download": local_transfer.download, "connect": connect,
    })
    app[auth.LOGINS] = {}
    app[auth.RATELIMITS] = {}
    app[auth.LOGIN_FAILURES] = {}
    register_routes(app, features)
    app.on_response_prepare.append(_stamp_headers)
    app.on_startup.append(_on_startup)
    app.cleanup_ctx.append(local_socket_ctx)
    app.on_shutdown.append(_on_shutdown)
    return app


async def _on_startup(app: web.Application) -> None:
    app[SCHEDULER].start()


async def _on_shutdown(app: web.Application) -> None:
    """Stop every session process before the server goes away (no orphans)."""
    app[EVENTS].close_all()
    await app[SCHEDULER].shutdown()
