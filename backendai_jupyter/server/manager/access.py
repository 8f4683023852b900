"""Who may call a matched route: the access kind each route of the table registered, without the
handlers (so the authentication middleware needs the table's answers, not the table's modules)."""

from __future__ import annotations

import enum

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

__all__ = ["Access", "access_of", "remember_access"]


class Access(enum.Enum):
    """Who may call a route, and which rate limit counts the call (as the real components do)."""

    #: A manager route for HMAC-signed requests; counted in the user's window.
    SIGNED = "signed"
    #: A manager route without authentication (the version probe); the client address's window.
    ANONYMOUS = "anonymous"
    #: The webserver's own routes (``/server/*``, ``/func``): no manager window; failed logins
    #: are throttled like the webserver's.
    WEBSERVER = "webserver"
    #: The storage proxy's transfer routes: the token is the credential; no rate limit.
    STORAGE = "storage"


_ACCESS: web.AppKey[dict[AbstractRoute, Access]] = web.AppKey("bjup_route_access", dict)


def remember_access(app: web.Application, route: AbstractRoute, access: Access) -> None:
    """Record the access kind of a route as it is registered."""
    app.setdefault(_ACCESS, {})[route] = access


def access_of(app: web.Application, route: AbstractRoute | None) -> Access | None:
    """The access kind of a matched route; ``None`` for no route (404/405)."""
    return None if route is None else app.get(_ACCESS, {}).get(route)
