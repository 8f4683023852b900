"""``%backendai app``: the magics' side of :class:`backendai_jupyter.client.apps.AppProxy`.

The proxy (one websocket per local TCP connection, protocol.md §8.1) lives in ``client/apps.py``;
the magics start it on the workspace loop, keep it in the Magics instance and stop
it on ``%backendai app --stop`` or when the kernel process exits.
"""

from __future__ import annotations

from ..client import Client
from ..client.apps import AppProxy, parse_bind

__all__ = ["AppProxy", "parse_bind", "start_proxy"]


async def start_proxy(
    client: Client, session: str, service: str, host: str, port: int,
    container_port: int | None = None,
) -> AppProxy:
    """Check the service exists, then listen on ``host:port`` (0 = a free port)."""
    await client.connect()
    proxy = AppProxy(client, session, service, host=host, port=port,
                     container_port=container_port)
    return await proxy.start()
