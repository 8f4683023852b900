"""A ZMQ context whose sockets live in a session's network namespace: the kernel's channels
without a relay.

A session with a network of its own has its kernel listening on *its* loopback, which the
endpoint cannot reach by address. :class:`~.netns.PortRelay` bridges that with host-loopback
ports and two copies per message through the endpoint's loop (about 0.8 ms on every cell's way
in, measured). This does without it: libzmq makes its TCP sockets in its I/O thread, and a new
thread is born in the network namespace of the thread that starts it, so a context started from
a short-lived thread that first joined the session's namespace (``setns``) connects straight to
``127.0.0.1:port`` *of the session* — the same address the kernel bound, no port on the host.

Only that I/O thread (and libzmq's reaper, which makes no socket) is in the session's namespace;
the starting thread ends at once and nothing else of the endpoint moves. The session cannot
steer it: it dials only the ports of the connection file, on the session's own loopback, which
the relay reached too. ``setns`` needs ``CAP_SYS_ADMIN`` over the namespace *and* in the caller's
own user namespace, so a root endpoint has it and an unprivileged one does not (it would have
to join the session's user namespace, which a multithreaded process cannot): there
:func:`context_in` raises ``OSError`` and the caller falls back to the relay.
"""

from __future__ import annotations

import ctypes
import os
import threading

import zmq
import zmq.asyncio

__all__ = ["context_in", "try_context_in"]

CLONE_NEWNET = 0x40000000


def _setns(fd: int, nstype: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def context_in(netns_fd: int) -> zmq.asyncio.Context:
    """A new asyncio ZMQ context whose connections are made in the network namespace of
    ``netns_fd``; the caller destroys it. ``OSError`` when this process may not join it."""
    ctx = zmq.asyncio.Context()
    failed: list[BaseException] = []

    def start() -> None:  # a thread of its own: it never returns to the host's namespace
        try:
            _setns(netns_fd, CLONE_NEWNET)
            # The first socket starts the context's I/O thread, here, in the session's network.
            zmq.Context.shadow(ctx.underlying).socket(zmq.PAIR).close(linger=0)
        except BaseException as e:  # handed to the caller
            failed.append(e)

    thread = threading.Thread(target=start, name="bjup-netns-zmq", daemon=True)
    thread.start()
    thread.join()
    if failed:
        ctx.destroy(linger=0)
        err = failed[0]
        if isinstance(err, OSError):
            raise err
        raise OSError(f"the session's network could not be joined: {err}")
    return ctx


def try_context_in(netns_fd: int) -> zmq.asyncio.Context | None:
    """:func:`context_in`, or None without a namespace or where this process may not join
    one (the caller then relays)."""
    if netns_fd < 0:
        return None
    try:
        return context_in(netns_fd)
    except OSError:
        return None
