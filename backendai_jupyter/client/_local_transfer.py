"""Same-machine folder transfers: the file's descriptor crosses, not its bytes.

When the storage proxy runs on this machine (the embedded local endpoint), moving a file through
HTTP costs a copy into the socket, a copy out of it and the protocol around them: about a fifth of
``cp``'s speed on a loaded 2-core machine, however the bytes are pumped. So ``request-upload`` and
``request-download`` answers of such an endpoint carry ``"local_transfer": "@NAME"``, a Linux
abstract Unix socket; the client connects to it, checks that the peer runs under its own user id
(``SO_PEERCRED``: a socket of another user never gets a descriptor), and sends one request line
with the open file attached (``SCM_RIGHTS``)::

    {"op": "upload", "url": "<the storage URL, token included>", "offset": N, "length": L}
    {"op": "download", "url": "<the storage URL, token included>", "offset": N}

The endpoint checks the token exactly as for HTTP and copies in the kernel
(``copy_file_range``), as ``cp`` does, answering ``{"offset": N, "size": S}`` lines as it goes,
``{"offset": N, "size": S, "done": true}`` at the end, or ``{"status": S, "error": "..."}``.
The tus offset stays the endpoint's record: whatever goes wrong here, :mod:`.transfers` carries
on over HTTP from the offset ``HEAD`` (or the ``.part`` file's size) reports, so resumability is
the HTTP path's.
Other servers (real clusters) do not advertise a socket, and nothing changes for them.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from yarl import URL

from ._relay import wait_ready

__all__ = [
    "LOCAL_CONNECT_HEADER",
    "LOCAL_TRANSFER_KEY",
    "connect_unix",
    "local_address",
    "local_connect",
    "local_download",
    "local_upload",
]

log = logging.getLogger(__name__)

LOCAL_TRANSFER_KEY = "local_transfer"
#: On ``GET /stream/session/{id}/apps`` answers to loopback clients: ``@NAME TICKET``.
LOCAL_CONNECT_HEADER = "X-BackendAI-Local-Connect"
#: How long a connection waits while the endpoint's socket has a full backlog (seconds).
CONNECT_PATIENCE = 1.0
_MAX_NAME = 100  # sun_path holds 108 bytes, the leading NUL included
_MAX_LINE = 64 * 1024

Report = Callable[[int, int], None]
"""``report(offset, size)``: how far the copy has got, of how much (``-1``: not said)."""


def local_address(info: Any) -> str | None:
    """The abstract socket a request-upload/-download answer offers, if it is a sane one."""
    if not isinstance(info, dict):
        return None
    address = info.get(LOCAL_TRANSFER_KEY)
    if not isinstance(address, str) or not address.startswith("@"):
        return None
    if not 1 < len(address.encode()) <= _MAX_NAME or "\0" in address:
        return None
    return address


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


async def connect_unix(
    sock: socket.socket, address: str, patience: float = CONNECT_PATIENCE
) -> None:
    """Connect the non-blocking Unix socket ``sock`` to ``address`` (a path, or ``"\\0name"``).

    A Unix socket never connects in the background: ``EAGAIN`` means the listener's backlog is
    full (a burst of connections). ``loop.sock_connect`` takes it for "in progress" and returns
    an unconnected socket (whose peer reads as nobody, and whose first read is ``ENOTCONN``), so
    try again, briefly; ``ConnectionRefusedError`` once ``patience`` seconds have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        try:
            sock.connect(address)
            return
        except BlockingIOError:
            if loop.time() >= deadline:
                raise ConnectionRefusedError(errno.EAGAIN, "the socket is busy") from None
            await asyncio.sleep(0.001)


async def _connect(address: str, patience: float = CONNECT_PATIENCE) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await connect_unix(sock, "\0" + address[1:], patience)
        if peer_uid(sock) != os.getuid():
            raise PermissionError(f"{address} belongs to another user")
    except BaseException:
        sock.close()
        raise
    return sock


async def _lines(sock: socket.socket) -> Any:
    """The endpoint's answer lines, parsed, as they arrive."""
    loop = asyncio.get_running_loop()
    pending = b""
    while True:
        data = await loop.sock_recv(sock, 4096)
        if not data:
            if pending:
                raise ConnectionError("the local transfer socket cut a line short")
            return
        pending += data
        if len(pending) > _MAX_LINE:
            raise ConnectionError("the local transfer socket sent an overlong line")
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield json.loads(line)


async def _exchange(
    address: str, request: dict[str, Any], fd: int, report: Report
) -> int | None:
    """Send ``request`` with ``fd`` attached; the final offset, or ``None`` when it failed."""
    try:
        sock = await _connect(address)
    except OSError as e:
        log.debug("local transfer: %s unavailable: %s", address, e)
        return None
    offset: int | None = None
    try:
        line = json.dumps(request).encode() + b"\n"
        # A fresh Unix socket takes a line this short at once (else BlockingIOError: HTTP);
        # the descriptor rides with its first byte.
        if socket.send_fds(sock, [line], [fd]) != len(line):
            return None
        async for answer in _lines(sock):
            if not isinstance(answer, dict) or not isinstance(answer.get("offset"), int):
                log.debug("local transfer: %s answered %r", address, answer)
                return None
            offset, size = int(answer["offset"]), answer.get("size")
            report(offset, size if isinstance(size, int) else -1)
            if answer.get("done") is True:
                return offset
        return None  # the endpoint went away mid-copy: HTTP resumes where it stands
    except (OSError, ValueError) as e:
        log.debug("local transfer: %s failed at offset %s: %s", address, offset, e)
        return None
    finally:
        sock.close()


async def local_upload(
    address: str, url: URL, fd: int, offset: int, length: int, report: Report
) -> int | None:
    """Upload ``length`` bytes of the open file ``fd`` from ``offset`` through the endpoint's
    socket; the upload's new offset, or ``None`` (nothing more is known: ask ``HEAD``)."""
    request = {"op": "upload", "url": str(url), "offset": offset, "length": length}
    return await _exchange(address, request, fd, report)


async def local_download(
    address: str, url: URL, fd: int, offset: int, report: Report
) -> int | None:
    """Have the endpoint write the file from ``offset`` into the open file ``fd`` (at the same
    offsets); its total size once complete, or ``None`` (resume from the file's size)."""
    request = {"op": "download", "url": str(url), "offset": offset}
    return await _exchange(address, request, fd, report)


async def _receive_fd(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One answer line and the descriptors that came with it."""
    data, fds = b"", []
    while b"\n" not in data and len(data) < _MAX_LINE:
        await wait_ready(sock.fileno(), write=False)
        chunk, got, _, _ = socket.recv_fds(sock, 4096, 1)
        fds.extend(got)
        if not chunk:
            break
        data += chunk
    return data, fds


async def local_connect(address: str, request: dict[str, Any]) -> socket.socket | None:
    """A socket connected to a session's service, from the endpoint (``{"op": "connect",
    "ticket": ..., "app": ..., ...}``), non-blocking; ``None`` when it cannot give one."""
    try:
        sock = await _connect(address)
    except OSError as e:
        log.debug("local connect: %s unavailable: %s", address, e)
        return None
    fds: list[int] = []
    try:
        line = json.dumps({"op": "connect", **request}).encode() + b"\n"
        await asyncio.get_running_loop().sock_sendall(sock, line)
        line, fds = await _receive_fd(sock)
        answer = json.loads(line) if line.endswith(b"\n") else None
        if not isinstance(answer, dict) or answer.get("ok") is not True or len(fds) != 1:
            log.debug("local connect: %s answered %r", address, answer)
            return None
        service = socket.socket(fileno=fds.pop())
        service.setblocking(False)
        return service
    except (OSError, ValueError) as e:
        log.debug("local connect: %s failed: %s", address, e)
        return None
    finally:
        for fd in fds:
            os.close(fd)
        sock.close()

