"""Relaying between two sockets in the kernel: ``splice(2)`` through a pipe, on the event loop.

The app proxy's same-machine path (:mod:`.apps`) joins the local client's socket and the
service's socket (handed over by the endpoint): each direction moves bytes socket → pipe →
socket without copying them into Python. A direction is a :class:`_Pump` driven by readiness
callbacks on the raw descriptors (no transports, no threads, no task or future per wakeup): the
callback itself splices, so a byte arriving costs one loop wakeup, and the descriptor stays
registered while the pump keeps waiting on it (no ``epoll_ctl`` pair per wait). Memory is the
pipe's pages; backpressure is the pipe being full (the source is then not read).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Callable

__all__ = ["PIPE_SIZE", "splice_one_way", "splice_pair", "wait_ready"]

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


class _Pump:
    """``src`` → pipe → ``dst`` from readiness callbacks; ``done`` when ``src`` ended and the
    pipe is empty (``dst`` then half-closed), or at a reset (quietly: the other direction
    notices on its own)."""

    def __init__(
        self, src: socket.socket, dst: socket.socket, counted: Callable[[int], None]
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.src, self.dst, self.counted = src.fileno(), dst.fileno(), counted
        self.dst_sock = dst
        self.r, self.w, self.capacity = _pipe()
        self.held = 0  # bytes in the pipe, not yet in dst
        self.eof = False
        self.waiting: tuple[int, bool] | None = None  # (fd, write) registered with the loop
        self.done: asyncio.Future[None] = self.loop.create_future()

    def step(self) -> None:
        """Move what can be moved now, then wait for the one descriptor that blocks."""
        if self.r < 0:  # closed (a cancelled tunnel)
            return
        try:
            blocked_out = self._move()
        except (ConnectionError, BrokenPipeError):
            self._finish(None)
            return
        except OSError as e:
            self._finish(e)
            return
        if self.eof and not self.held:
            with contextlib.suppress(OSError):
                self.dst_sock.shutdown(socket.SHUT_WR)
            self._finish(None)
        elif blocked_out:
            self._wait(self.dst, write=True)
        else:
            self._wait(self.src, write=False)

    def _move(self) -> bool:
        """Splice until neither side moves; whether the last stop was ``dst`` being full."""
        while True:
            moved = blocked_out = False
            if not self.eof and self.held < self.capacity:
                try:
                    n = os.splice(self.src, self.w, self.capacity - self.held, flags=_FLAGS)
                except BlockingIOError:
                    pass
                else:
                    self.eof, self.held, moved = n == 0, self.held + n, True
            if self.held:
                try:
                    n = os.splice(self.r, self.dst, self.held, flags=_FLAGS)
                except BlockingIOError:
                    blocked_out = True
                else:
                    self.held -= n
                    moved = True
                    self.counted(n)
            if not moved or (self.eof and not self.held):
                return blocked_out

    def _wait(self, fd: int, *, write: bool) -> None:
        if self.waiting == (fd, write):
            return  # still registered: the callback comes again when ready
        self._unregister()
        (self.loop.add_writer if write else self.loop.add_reader)(fd, self.step)
        self.waiting = (fd, write)

    def _unregister(self) -> None:
        if self.waiting is not None:
            fd, write = self.waiting
            (self.loop.remove_writer if write else self.loop.remove_reader)(fd)
            self.waiting = None

    def _finish(self, error: OSError | None) -> None:
        self._unregister()
        if not self.done.done():
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)

    def close(self) -> None:
        self._unregister()
        if self.r >= 0:
            os.close(self.r)
            os.close(self.w)
            self.r = self.w = -1


async def splice_one_way(
    src: socket.socket, dst: socket.socket, counted: Callable[[int], None]
) -> None:
    """Move bytes from ``src`` to ``dst`` until ``src`` ends, then half-close ``dst``.

    Both sockets must be non-blocking. ``counted(n)`` after each piece delivered. A reset on
    either side ends it quietly (the other direction notices on its own); other ``OSError``
    propagate.
    """
    pump = _Pump(src, dst, counted)
    try:
        pump.step()
        await pump.done
    finally:
        pump.close()


async def splice_pair(
    a: socket.socket, b: socket.socket,
    a_to_b: Callable[[int], None], b_to_a: Callable[[int], None],
) -> None:
    """Both directions of :func:`splice_one_way` at once, until both ended; the pumps start
    right here (a byte already waiting moves now, not a loop iteration later)."""
    up = _Pump(a, b, a_to_b)
    try:
        down = _Pump(b, a, b_to_a)
    except BaseException:
        up.close()
        raise
    try:
        up.step()
        down.step()
        await asyncio.gather(up.done, down.done)
    finally:
        up.close()
        down.close()
