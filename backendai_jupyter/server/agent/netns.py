"""A session's own network: its namespace, its way out, and the endpoint's way in.

With ``bwrap --unshare-net`` a session has a network namespace of its own: its loopback is its
own (the host's — the endpoint, other sessions' kernels and services — is unreachable), and it
reaches the outside through **slirp4netns** (user-mode networking: TCP/UDP from the session
become the endpoint machine's own connections; ``--disable-host-loopback`` keeps the host's
loopback out of reach through the gateway address, too). Why slirp4netns rather than pasta: it
attaches to an existing namespace with an explicit ready fd and an exit fd, runs as root in a
sandbox of its own with a seccomp filter (``--enable-sandbox --enable-seccomp``), and has an
explicit switch for the host's loopback; pasta, run by root, switches to ``nobody`` before it
joins the namespaces and cannot join a namespace owned by the session's user (measured here).

The endpoint reaches a port on the session's loopback (a service, a ``preopen`` port, the
kernel's ZMQ ports) through :class:`SocketFactory`: the sandbox's first process
(``sandbox_init.py``) makes sockets *inside* the namespace and hands them over; the endpoint
connects them. No listening port on the host and no path is involved; the kernel's ZMQ ports,
which ``jupyter_client`` connects to by address, are relayed from host-loopback ports by
:class:`PortRelay` (the relay connects to the kernel through the factory).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import functools
import os
import select
import shutil
import socket
import struct
from collections.abc import Iterable

__all__ = [
    "NS_GET_USERNS",
    "PortRelay",
    "SlirpNet",
    "SocketFactory",
    "connect_in_session",
    "probe_slirp",
]

NS_GET_USERNS = 0xB701  # ioctl on a namespace fd: the user namespace that owns it
_BUF = 2**16


class SocketFactory:
    """Sockets made inside a session's network namespace by its ``sandbox_init`` process."""

    def __init__(self, chan: socket.socket) -> None:
        self.chan = chan
        chan.setblocking(False)
        self._lock = asyncio.Lock()

    async def make_socket(self) -> socket.socket:
        """One new TCP socket of the session's namespace (unconnected)."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            await loop.sock_sendall(self.chan, b"s")
            while True:
                try:
                    data, anc, flags, _ = self.chan.recvmsg(1, socket.CMSG_SPACE(4))
                except BlockingIOError:
                    await _readable(loop, self.chan)
                    continue
                break
        fds = _fds_of(anc)
        if not data or len(fds) != 1 or flags & socket.MSG_CTRUNC:
            for fd in fds:
                os.close(fd)
            raise ConnectionError("the session's sandbox gave no socket")
        made = socket.socket(fileno=fds[0])
        if made.family != socket.AF_INET or made.type != socket.SOCK_STREAM:
            made.close()  # the session's code is not trusted to say what it sent
            raise ConnectionError("the session's sandbox gave an unexpected socket")
        made.setblocking(False)
        return made

    async def ready(self) -> tuple[int, int, int]:
        """Wait for the sandbox's ``ready``: ``(host pid, host uid, host gid)`` of the process
        whose namespaces are the session's (the kernel translated them)."""
        self.chan.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        loop = asyncio.get_running_loop()
        size = struct.calcsize("3i")
        while True:
            try:
                data, anc, _, _ = self.chan.recvmsg(16, socket.CMSG_SPACE(size))
            except BlockingIOError:
                await _readable(loop, self.chan)
                continue
            break
        for fd in _fds_of(anc):
            os.close(fd)
        creds = [d for lvl, kind, d in anc
                 if lvl == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS]
        if data != b"ready" or not creds or len(creds[0]) < size:
            raise RuntimeError("the sandbox did not start")
        pid, uid, gid = struct.unpack("3i", creds[0][:size])
        self.chan.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
        return pid, uid, gid

    async def connect(self, port: int) -> socket.socket:
        """A socket connected to ``127.0.0.1:port`` of the session's loopback."""
        sock = await self.make_socket()
        try:
            await connect_tcp(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        self.chan.close()


async def connect_in_session(factory: SocketFactory | None, port: int) -> socket.socket:
    """A connected socket to ``port`` where the session's processes listen: its own loopback
    (``factory``) or, for a session without a network of its own, the host's."""
    if factory is not None:
        return await factory.connect(port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await connect_tcp(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


async def connect_tcp(sock: socket.socket, address: tuple[str, int]) -> None:
    """``loop.sock_connect`` without its loop iteration where none is needed: to a loopback
    address the handshake is over when ``connect(2)`` returns ``EINPROGRESS`` (the SYN-ACK is
    processed as the call releases the socket), so a zero-timeout poll already tells."""
    try:
        sock.connect(address)
        return
    except BlockingIOError:
        pass
    ready = select.poll()
    ready.register(sock, select.POLLOUT)
    if ready.poll(0):
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error))  # ECONNREFUSED: ConnectionRefusedError
        return
    await asyncio.get_running_loop().sock_connect(sock, address)  # EALREADY: it waits


def _fds_of(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(data[: len(data) - len(data) % arr.itemsize])
            fds += list(arr)
    return fds


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(sock.fileno(), ready)
    try:
        await fut
    finally:
        loop.remove_reader(sock.fileno())


# -- the kernel's ports: host loopback → the session's loopback ---------------------------------


class PortRelay:
    """Listens on host-loopback ports and relays each connection to a port on the session's
    loopback (what ``jupyter_client`` connects to for the kernel's channels)."""

    def __init__(self, factory: SocketFactory) -> None:
        self.factory = factory
        self.servers: list[asyncio.Server] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, ports: Iterable[int]) -> dict[int, int]:
        """Listen for each of ``ports`` (on a free host port: the kernel's port numbers were
        free in the session's network, not necessarily on the host); returns the map from
        the session's port to the host's."""
        outer: dict[int, int] = {}
        for port in ports:
            handler = functools.partial(self._relay, port)
            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            self.servers.append(server)
            outer[port] = int(server.sockets[0].getsockname()[1])
        return outer

    async def _relay(self, port: int, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        sock: socket.socket | None = None
        try:
            sock = await self.factory.connect(port)
            ir, iw = await asyncio.open_connection(sock=sock, limit=_BUF)
        except (OSError, asyncio.CancelledError):
            if sock is not None:
                sock.close()
            w.close()
            self.tasks.discard(task)
            return
        try:
            await asyncio.gather(_pump(r, iw), _pump(ir, w))
        except asyncio.CancelledError:
            pass  # closed with the session: a quiet end (start_server logs a cancelled task)
        finally:
            for writer in (w, iw):
                writer.close()
            self.tasks.discard(task)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for task in list(self.tasks):
            task.cancel()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self.servers.clear()


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(_BUF):
            dst.write(chunk)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (OSError, RuntimeError):
        pass


# -- slirp4netns ----------------------------------------------------------------------------------


def _slirp_path() -> str | None:
    return shutil.which("slirp4netns")


@functools.lru_cache(maxsize=1)
def probe_slirp() -> str | None:
    """``None`` when slirp4netns can give sessions a way out here, else why not."""
    if _slirp_path() is None:
        return "slirp4netns is not installed"
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        return f"/dev/net/tun cannot be opened ({e.strerror})"
    return None


class SlirpNet:
    """The slirp4netns process that gives one session's namespace its way out."""

    def __init__(self, proc: asyncio.subprocess.Process, exit_w: int) -> None:
        self.proc = proc
        self._exit_w = exit_w

    @classmethod
    async def attach(cls, sandbox_pid: int, log: int) -> SlirpNet:
        """Configure ``tap0`` (10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3) in the network
        namespace of ``sandbox_pid``; returns once it is up."""
        net = os.open(f"/proc/{sandbox_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        user = fcntl.ioctl(net, NS_GET_USERNS)
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                _slirp_path() or "slirp4netns", "--configure", "--mtu=65520",
                "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp",
                f"--ready-fd={ready_w}", f"--exit-fd={exit_r}",
                f"--userns-path=/proc/self/fd/{user}", "--netns-type=path",
                f"/proc/self/fd/{net}", "tap0",
                pass_fds=(ready_w, exit_r, net, user), stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True,
            )
        except BaseException:
            os.close(exit_w)
            raise
        finally:
            for fd in (ready_w, exit_r, net, user):
                os.close(fd)
        self = cls(proc, exit_w)
        try:
            ok = await asyncio.wait_for(_read_fd(ready_r), 20)
        except asyncio.TimeoutError:
            ok = b""
        finally:
            os.close(ready_r)
        if ok != b"1":
            await self.stop()
            raise RuntimeError("the session's network did not come up (slirp4netns)")
        return self

    def pids(self) -> set[int]:
        return {self.proc.pid} if self.proc.returncode is None else set()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def stop(self) -> None:
        if self._exit_w >= 0:
            os.close(self._exit_w)  # slirp4netns exits when its exit fd closes
            self._exit_w = -1
        try:
            await asyncio.wait_for(self.proc.wait(), 2)
        except asyncio.TimeoutError:
            self.kill()
            await self.proc.wait()


async def _read_fd(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[bytes] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            try:
                fut.set_result(os.read(fd, 1))
            except OSError:
                fut.set_result(b"")

    loop.add_reader(fd, ready)
    try:
        return await fut
    finally:
        loop.remove_reader(fd)
