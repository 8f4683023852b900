"""Relaying between two sockets in the kernel: ``splice(2)`` through a pipe, on the event loop.

The app proxy's same-machine path (:mod:`.apps`) joins the local client's socket and the
service's socket (handed over by the endpoint): each direction moves bytes socket → pipe →
socket without copying them into Python, waking on readiness of the raw descriptors (no
transports, no threads). Memory is the pipe's pages; backpressure is the pipe being full.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Callable

__all__ = ["PIPE_SIZE", "splice_one_way", "wait_ready"]

PIPE_SIZE = 1024 * 1024
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ / F_GETPIPE_SZ (Linux)
_F_GETPIPE_SZ = 1032
# Linux only (the endpoint offers its socket only there); getattr keeps the import portable.
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


async def wait_ready(fd: int, *, write: bool) -> None:
    """Wait until ``fd`` can be read (or written)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await waiter
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


def _pipe() -> tuple[int, int, int]:
    """A non-blocking pipe, its read and write ends and its capacity."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):  # the default (64 KiB) still works, with more wakeups
        fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_SIZE)
    return r, w, fcntl.fcntl(w, _F_GETPIPE_SZ)


async def splice_one_way(
    src: socket.socket, dst: socket.socket, counted: Callable[[int], None]
) -> None:
    """Move bytes from ``src`` to ``dst`` until ``src`` ends, then half-close ``dst``.

    Both sockets must be non-blocking. ``counted(n)`` after each piece delivered. A reset on
    either side ends it quietly (the other direction notices on its own).
    """
    r, w, capacity = _pipe()
    held = 0  # bytes in the pipe, not yet in dst
    eof = False
    try:
        while not (eof and held == 0):
            moved = False
            if not eof and held < capacity:
                try:
                    n = os.splice(src.fileno(), w, capacity - held, flags=_FLAGS)
                except BlockingIOError:
                    pass
                else:
                    eof, held, moved = n == 0, held + n, True
            if held:
                try:
                    n = os.splice(r, dst.fileno(), held, flags=_FLAGS)
                except BlockingIOError:
                    pass
                else:
                    held -= n
                    moved = True
                    counted(n)
            if not moved:
                await wait_ready(dst.fileno() if held else src.fileno(), write=bool(held))
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
    except (ConnectionError, BrokenPipeError):
        pass
    finally:
        os.close(r)
        os.close(w)
