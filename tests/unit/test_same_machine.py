"""The same-machine data plane's pure parts: which offers the client takes, the kernel copy
between files at offsets, and the relay pump between two sockets (bytes, half-close,
backpressure)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from backendai_jupyter.client._local_transfer import _connect, local_address, peer_uid
from backendai_jupyter.client._relay import SCRATCH_SIZE, relay_one_way
from backendai_jupyter.server.agent.netns import connect_tcp
from backendai_jupyter.server.agent.services import connect_unix_nofollow
from backendai_jupyter.server.storage.local_transfer import copy_range


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"local_transfer": "@backendai-jupyter-0123"}, "@backendai-jupyter-0123"),
        ({"local_transfer": "@x"}, "@x"),
        ({"local_transfer": "@"}, None),  # no name
        ({"local_transfer": "/tmp/sock"}, None),  # a path: never (could be anyone's file)
        ({"local_transfer": "@a\0b"}, None),
        ({"local_transfer": "@" + "n" * 100}, None),  # longer than sun_path takes
        ({"local_transfer": 7}, None),
        ({"token": "t", "url": "u"}, None),  # a real storage proxy's answer
        (["@x"], None),
        (None, None),
    ],
)
def test_local_address(info: object, expected: str | None) -> None:
    assert local_address(info) == expected


def test_copy_range_at_offsets(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 11)
    (tmp_path / "src").write_bytes(data)
    (tmp_path / "dst").write_bytes(b"k" * 100)
    src = os.open(tmp_path / "src", os.O_RDONLY)
    dst = os.open(tmp_path / "dst", os.O_WRONLY)
    try:
        assert copy_range(src, dst, 5, 100, 1024 * 1024) == 1024 * 1024
        assert copy_range(src, dst, 5 + 1024 * 1024, 100 + 1024 * 1024, len(data)) == (
            len(data) - 5 - 1024 * 1024  # short only at the source's end
        )
    finally:
        os.close(src)
        os.close(dst)
    assert (tmp_path / "dst").read_bytes() == b"k" * 100 + data[5:]


def test_peer_uid_is_ours() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert peer_uid(a) == os.getuid()


async def test_connect_waits_out_a_full_backlog() -> None:
    """A burst fills the listener's backlog: the client waits for room instead of taking the
    unconnected socket (whose peer would read as another user's) and giving up."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    address = f"@bjup-test-backlog-{os.getpid()}"
    listener.bind("\0" + address[1:])
    listener.listen(0)  # one waiting connection fills it
    with listener:
        first = await _connect(address)
        with pytest.raises(ConnectionRefusedError, match="busy"):
            await _connect(address, patience=0.01)
        later = asyncio.create_task(_connect(address))
        await asyncio.sleep(0.02)
        accepted, _ = listener.accept()  # room again: the waiting connection goes through
        second = await asyncio.wait_for(later, 5)
        assert peer_uid(second) == os.getuid()
        for s in (first, second, accepted, listener.accept()[0]):
            s.close()


async def test_connect_tcp_on_the_loopback() -> None:
    """Connected without waiting for the loop when the handshake is already over; a port
    nobody listens on is ``ConnectionRefusedError``, as from ``sock_connect``."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = listener.getsockname()
        with socket.socket() as sock:
            sock.setblocking(False)
            await connect_tcp(sock, address)
            assert sock.getpeername() == address
    with socket.socket() as sock:  # the listener is gone: nothing on that port now
        sock.setblocking(False)
        with pytest.raises(ConnectionRefusedError):
            await connect_tcp(sock, address)


async def test_a_unix_service_with_a_full_backlog_is_waited_for(tmp_path: Path) -> None:
    """A service on a Unix socket whose backlog is full (a browser's burst): the endpoint's
    connection waits for room rather than coming back unconnected."""
    path = str(tmp_path / "svc.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(0)
        first = await connect_unix_nofollow(path)
        later = asyncio.create_task(connect_unix_nofollow(path))
        await asyncio.sleep(0.02)
        accepted, _ = listener.accept()
        second = await asyncio.wait_for(later, 5)
        assert second.getpeername()  # connected (ENOTCONN otherwise)
        for sock in (first, second, accepted, listener.accept()[0]):
            sock.close()


class _Piped:
    """A sender → relay pump → reader chain over two socket pairs: ``outer`` ends are the
    test's, ``inner`` ends the pump's."""

    def __init__(self, buf: int | None = None) -> None:
        self.left_outer, self.left_inner = socket.socketpair()
        self.right_inner, self.right_outer = socket.socketpair()
        self.moved: list[int] = []
        for s in self.sockets:
            s.setblocking(False)
            if buf is not None:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buf)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buf)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return self.left_inner, self.right_inner, self.left_outer, self.right_outer

    def start(self, payload: bytes) -> tuple[asyncio.Task[None], asyncio.Task[None]]:
        """The pump, and a sender of ``payload`` that half-closes after it."""
        loop = asyncio.get_running_loop()
        pump = asyncio.create_task(
            relay_one_way(self.left_inner, self.right_inner, self.moved.append))

        async def send() -> None:
            await loop.sock_sendall(self.left_outer, payload)
            self.left_outer.shutdown(socket.SHUT_WR)

        return pump, asyncio.create_task(send())

    async def read_all(self) -> bytes:
        """What comes out until the pump half-closes (``b""``)."""
        got = bytearray()
        while chunk := await asyncio.get_running_loop().sock_recv(self.right_outer, 1 << 20):
            got += chunk
        return bytes(got)

    def close(self) -> None:
        for s in self.sockets:
            s.close()


async def test_relay_pump_moves_bytes_and_half_closes() -> None:
    payload = os.urandom(5 * 1024 * 1024 + 3)
    piped = _Piped()
    try:
        pump, sender = piped.start(payload)
        got = await piped.read_all()
        await asyncio.wait_for(asyncio.gather(sender, pump), 10)
    finally:
        piped.close()
    assert got == payload and sum(piped.moved) == len(payload)


async def test_relay_pump_holds_at_most_one_read_for_a_reader_that_stops() -> None:
    """The destination reads nothing: the pump keeps at most one read and stops reading, so
    the sender blocks (memory bounded); once the destination reads, everything arrives."""
    payload = os.urandom(3 * SCRATCH_SIZE)
    piped = _Piped(buf=64 * 1024)
    try:
        pump, sender = piped.start(payload)
        await asyncio.sleep(0.3)
        assert not sender.done()  # held back: the pump stopped reading
        assert sum(piped.moved) < 2 * SCRATCH_SIZE
        got = await piped.read_all()
        await asyncio.wait_for(asyncio.gather(sender, pump), 10)
    finally:
        piped.close()
    assert got == payload


def test_copy_range_across_file_systems(tmp_path: Path) -> None:
    """tmpfs → the test's directory: copy_file_range may refuse (EXDEV), sendfile takes over."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system to copy across")
    data = os.urandom(2 * 1024 * 1024 + 7)
    src_path = shm / f"bjup-copy-{os.getpid()}"
    src_path.write_bytes(data)
    try:
        src = os.open(src_path, os.O_RDONLY)
        dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            assert copy_range(src, dst, 7, 0, len(data)) == len(data) - 7
        finally:
            os.close(src)
            os.close(dst)
    finally:
        src_path.unlink()
    assert (tmp_path / "dst").read_bytes() == data[7:]
