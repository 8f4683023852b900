"""``%backendai app``: proxy a session's service to a local port
(:class:`~...client.apps.AppProxy`, one websocket per local TCP connection, protocol.md §8.1).

The proxies run on the workspace loop and are kept in :attr:`~..context.Context.proxies`; they
stop on ``%backendai app --stop``, at ``%unload_ext`` or when the kernel process exits
(:meth:`~..context.Context.close`).
"""

from __future__ import annotations

import argparse
import atexit
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ...client import Client
from ...client.apps import AppProxy, parse_bind
from ..grammar import PROG, MagicParser
from ..results import Table

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(p: MagicParser) -> None:
    p.add_argument("session", nargs="?")
    p.add_argument("service", nargs="?")
    p.add_argument("-b", "--bind", default="127.0.0.1:8080", metavar="[HOST:]PORT",
                   help="local address (default 127.0.0.1:8080; port 0 picks a free one)")
    p.add_argument("--port", type=int, dest="container_port", metavar="PORT",
                   help="the service's container port, when it has several")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--list", action="store_true", help="list the running proxies")
    act.add_argument("--stop", metavar="PORT|all", help="stop a proxy (or all of them)")


async def start_proxy(
    client: Client, session: str, service: str, host: str, port: int,
    container_port: int | None = None,
) -> AppProxy:
    """Check the service exists, then listen on ``host:port`` (0 = a free port)."""
    await client.connect()
    proxy = AppProxy(client, session, service, host=host, port=port,
                     container_port=container_port)
    return await proxy.start()


def _stop(ctx: Context, which: str) -> None:
    if which == "all":
        ports = list(ctx.proxies)
    elif which.isdigit() and int(which) in ctx.proxies:
        ports = [int(which)]
    else:
        raise UsageError(f"{PROG} app: no proxy on port {which} "
                         f"(running: {', '.join(map(str, ctx.proxies)) or 'none'})")
    for port in ports:
        ctx.call(ctx.proxies.pop(port).aclose())
        ctx.status(f"✓ Proxy on port {port} stopped.")


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> Any:
    if args.list:
        rows = tuple((p.port, p.session, p.service, p.url) for p in ctx.proxies.values())
        return Table(("port", "session", "service", "url"), rows)
    if args.stop is not None:
        _stop(ctx, args.stop)
        return None
    if not args.session or not args.service:
        raise UsageError(f"{PROG} app: SESSION and SERVICE are required (or --list/--stop)")
    try:
        host, port = parse_bind(args.bind)
    except ValueError as e:
        raise UsageError(f"{PROG} app: invalid --bind {args.bind!r}: {e}") from None
    if port and port in ctx.proxies:  # a second command on the same port replaces the proxy
        _stop(ctx, str(port))
    proxy = ctx.call(start_proxy(ctx.client, args.session, args.service, host, port,
                                 args.container_port))
    if not ctx.proxies:  # stop the listeners before the background loop goes at exit
        atexit.unregister(ctx.close)
        atexit.register(ctx.close)
    ctx.proxies[proxy.port] = proxy
    ctx.status(f'✓ A local proxy to the application "{args.service}" provided by the '
               f'session "{args.session}" is available at: {proxy.url} '
               f"(stop it with %backendai app --stop {proxy.port})")
    return proxy
