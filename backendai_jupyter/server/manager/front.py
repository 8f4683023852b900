"""The two front doors that are not manager API routes: the version probe ``GET /`` and the
webserver's ``/func/<path>`` proxy (session mode, minus the network hop)."""

from __future__ import annotations

from aiohttp import web

from . import auth
from .access import Access, access_of
from .errors import Problem
from .scheduler import SCHEDULER
from .state import CONFIG, KEYPAIRS

__all__ = ["func_proxy", "hello"]


async def hello(request: web.Request) -> web.Response:
    """Unsigned ``GET /``: the version probe every client starts with."""
    config = request.app[CONFIG]
    release = config.features.manager_release
    body: dict[str, object] = {"version": config.api_version, "manager": f"{release}-local"}
    sched = request.app.get(SCHEDULER)
    if sched is not None:
        # Which of the sandbox's layers sessions get here, and what is missing (sandbox.py).
        body["sandbox"] = sched.isolation.diagnostics()
    return web.json_response(body)


async def func_proxy(request: web.Request) -> web.StreamResponse:
    """Session mode: ``/func/<path>`` runs the handler of ``/<path>`` for the logged-in user.
    ``GET /func/`` is the anonymous probe. The user's requests count against the user's
    rate-limit window, as the webserver's re-signed requests do on the manager."""
    tail = request.match_info["tail"]
    if not tail.strip("/"):
        if request.method == "GET":
            auth.count_anonymous(request)
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
    if access_of(request.app, match.route) not in (Access.SIGNED, Access.ANONYMOUS):
        raise web.HTTPNotFound()  # the webserver proxies manager routes only
    match.add_app(request.app)
    # aiohttp's own dispatcher assigns the match the same way (web_app._handle).
    inner._match_info = match
    inner[auth.ACCESS_KEY] = access_key
    auth.count_user(inner, request.app[KEYPAIRS][access_key])
    response = await match.handler(inner)
    if auth.RATELIMIT in inner:
        request[auth.RATELIMIT] = inner[auth.RATELIMIT]
    return response
