"""Writing a received byte stream to a file: few thread hops, bounded memory.

Shared by the client's downloads and the local endpoint's tus ``PATCH`` handler. Network reads
arrive in pieces of 64-256 KiB; writing each one through ``asyncio.to_thread`` costs a thread
hand-off (and, before, an ``open``/``close``) per piece, which dominated the transfer time.
:class:`BatchedFileWriter` gathers pieces into batches of :data:`WRITE_BATCH` bytes and writes
each batch with one ``os.writev`` in a worker thread while the next batch is being received, so
memory stays below about two batches.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

__all__ = ["WRITE_BATCH", "BatchedFileWriter"]

WRITE_BATCH = 4 * 1024 * 1024
_IOV_MAX = 512  # well under every platform's IOV_MAX (1024 on Linux)


def _write_all(fd: int, chunks: list[bytes]) -> int:
    """Write every chunk (``writev`` in groups, short writes finished); return bytes written."""
    done = 0
    for start in range(0, len(chunks), _IOV_MAX):
        group = chunks[start : start + _IOV_MAX]
        want = sum(len(c) for c in group)
        n = os.writev(fd, group)
        done += n
        if n < want:  # a short write: finish it piece by piece
            rest = memoryview(b"".join(group))[n:]
            while rest:
                m = os.write(fd, rest)
                done += m
                rest = rest[m:]
    return done


class BatchedFileWriter:
    """Append received chunks to a file descriptor, one batch in a worker thread at a time.

    ``written`` counts the bytes that reached the file; after :meth:`close` (which also runs
    when an error or a cancellation interrupted the transfer) it includes every chunk handed to
    :meth:`write`, unless the file system refused them.
    """

    def __init__(self, fd: int, batch: int = WRITE_BATCH) -> None:
        self._fd = fd
        self._batch = max(1, batch)
        self._buf: list[bytes] = []
        self._buffered = 0
        self._pending: asyncio.Future[int] | None = None
        self._closed = False
        self.written = 0

    @classmethod
    async def open(cls, path: Path, *, append: bool, batch: int = WRITE_BATCH) -> BatchedFileWriter:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        fd = await asyncio.to_thread(os.open, path, flags, 0o644)
        return cls(fd, batch)

    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._buf.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= self._batch:
            await self._start_batch()

    async def _wait(self) -> None:
        pending = self._pending
        if pending is None:
            return
        # Shielded: a cancelled transfer must not close the descriptor under a running write.
        self.written += await asyncio.shield(pending)
        self._pending = None

    async def _start_batch(self) -> None:
        await self._wait()
        if not self._buf:
            return
        chunks, self._buf, self._buffered = self._buf, [], 0
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(None, _write_all, self._fd, chunks)

    async def close(self) -> None:
        """Write what is buffered, wait for the writes and close the file (errors propagate)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._start_batch()
            await self._wait()
        finally:
            pending, fd = self._pending, self._fd
            if pending is not None and not pending.done():
                # Cancelled while a write runs: close once it finished, keeping its count.
                def later(fut: asyncio.Future[int]) -> None:
                    if not fut.cancelled() and fut.exception() is None:
                        self.written += fut.result()
                    os.close(fd)

                pending.add_done_callback(later)
            else:
                if pending is not None and not pending.cancelled():
                    pending.exception()  # retrieved: raised above already, or nothing
                os.close(fd)
            self._pending = None
