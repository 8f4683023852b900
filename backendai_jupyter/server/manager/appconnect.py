"""Same-machine app connections: the ``connect`` operation of the endpoint's same-machine socket.

A loopback client's ``GET /stream/session/{id}/apps`` answer carries
``X-BackendAI-Local-Connect: @NAME TICKET`` (:func:`connect_offer`): the socket's address and a
signed ticket for that session and access key (the storage proxy's HMAC token, ``op: connect``).
For each local connection, the client's :class:`~backendai_jupyter.client.apps.AppProxy` sends
``{"op": "connect", "ticket": T, "app": A, "port": N, "arguments": {...}, "envs": {...}}`` and
gets back ``{"ok": true}`` with a socket already connected to the service attached; it joins its
local client's socket to that one (``client/_relay.py``), and no byte crosses the endpoint.
The service is resolved, started and reached exactly as by ``tcpproxy``: the connect step is the
agent's (``ServiceManager.connect``: inside the session's network namespace, Unix sockets without
following links), kept apart from the byte pumps (``appproxy.relay`` for websockets, the
client's relay here).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ..agent.services import session_services
from ..storage import FOLDER_STORE
from ..storage.storage_proxy import sign_token, verify_token
from .auth import ACCESS_KEY
from .local_socket import Channel, Refused, offered_address
from .state import REGISTRY, ComputeSession

__all__ = ["connect", "connect_offer"]

_TICKET_TTL = 24 * 3600


def connect_offer(request: web.Request, sess: ComputeSession) -> str | None:
    """``@NAME TICKET`` for a loopback client's ``apps`` answer, or ``None``."""
    address = offered_address(request)
    if address is None:
        return None
    ticket = sign_token(request.app[FOLDER_STORE].secret, {
        "op": "connect", "session": sess.id, "ak": request[ACCESS_KEY],
        "exp": int(time.time()) + _TICKET_TTL,
    })
    return f"{address} {ticket}"


def _mapping(value: Any, name: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise Refused(400, f"{name} must be a JSON object")


async def connect(app: web.Application, channel: Channel) -> None:
    """Hand the client a socket connected to the ticket's session's service ``app``."""
    request = channel.request
    claims = verify_token(app[FOLDER_STORE].secret, str(request.get("ticket", "")), "connect")
    sess = app[REGISTRY].get(str(claims.get("session")), str(claims.get("ak")))
    name, port = str(request.get("app") or ""), request.get("port")
    sdef = session_services(app, sess).find(name) if sess.status == "RUNNING" else None
    if sdef is None:
        raise Refused(404, f"No such app service: {sess.name}:{name}")
    if port is not None and port != sdef.port:  # as tcpproxy's ?port=
        raise Refused(400, f"Service {name} does not open the port number {port}.")
    services = session_services(app, sess)
    address = await services.ensure(
        sdef, _mapping(request.get("arguments"), "arguments"), _mapping(request.get("envs"), "envs")
    )
    sess.last_used = time.monotonic()
    try:
        # The connect step is the agent's, as for tcpproxy (inside the session's network).
        sock = await services.connect(address)
    except ConnectionRefusedError:
        raise Refused(503, "the service refused the connection") from None
    try:
        await channel.hand_over({"ok": True}, sock.fileno())
    finally:
        sock.close()
