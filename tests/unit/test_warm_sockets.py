"""``WarmSockets.take``: a cancel belongs to whoever was cancelled.

A pre-opened execute websocket that failed or was given up is "no socket" (the run opens a
fresh one); a cancel of the caller (an interrupt while the socket still connects) must reach the
caller, and the socket nobody will use must still be closed once it connects.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backendai_jupyter.client._warm_sockets import WarmSockets


class Socket:
    closed = False

    async def close(self) -> None:
        self.closed = True


class Http:
    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.socket = Socket()

    async def ws_connect(self, path: str) -> Socket:
        await self.connected.wait()
        return self.socket


class Client:
    def __init__(self) -> None:
        self.http = Http()


def pool() -> tuple[WarmSockets, Http]:
    client: Any = Client()
    return WarmSockets(client), client.http


async def test_a_cancelled_caller_is_cancelled_and_the_socket_closed_once_it_connects() -> None:
    warm, http = pool()
    warm.prepare("s1")
    taking = asyncio.ensure_future(warm.take("s1"))
    await asyncio.sleep(0.01)
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    http.connected.set()
    await warm.close()
    assert http.socket.closed


async def test_a_connection_given_up_elsewhere_is_no_socket() -> None:
    warm, http = pool()
    warm.prepare("s1")
    connecting = warm._pending["s1"]
    taking = asyncio.ensure_future(warm.take("s1"))
    await asyncio.sleep(0.01)
    connecting.cancel()
    assert await taking is None


async def test_a_connected_socket_is_taken() -> None:
    warm, http = pool()
    warm.prepare("s1")
    http.connected.set()
    assert await warm.take("s1") is http.socket
    assert await warm.take("s1") is None  # taken once
