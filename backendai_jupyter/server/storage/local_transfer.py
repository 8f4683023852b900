"""Same-machine folder transfers: the ``upload`` / ``download`` operations of the endpoint's
same-machine socket (``manager/local_socket.py``; the client's side:
``client/_local_transfer.py``).

The client attaches its open file to a request naming the storage URL it got from
``request-upload`` / ``request-download`` (whose answers to loopback clients carry the socket's
address as ``"local_transfer"``); the token is checked by the same code as HTTP
(``storage_proxy.upload_for`` / ``download_path``) and the bytes are copied in the kernel between
that file and the folder (``copy_file_range``, as ``cp``): none passes through Python, memory
stays flat whatever the size. Uploads keep the tus record: they append to the same staged
``.part`` under the upload's lock, report the same offsets and complete with the same move; a cut
copy keeps what arrived, and the client resumes over HTTP from the offset ``HEAD`` reports.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from yarl import URL

from ..manager.local_socket import Channel, Refused
from .storage_proxy import (
    commit_if_complete,
    download_path,
    offset_mismatch,
    too_long,
    upload_for,
)
from .store import FOLDER_STORE

__all__ = ["COPY_STEP", "copy_range", "download", "upload"]


#: Bytes per kernel copy: a progress line after each (and a check that the client is still
#: there); few enough thread hops to cost nothing.
COPY_STEP = 16 * 1024 * 1024

Tell = Callable[[dict[str, Any]], Awaitable[bool]]
"""Send one answer line to the client; whether it went out."""


def copy_range(src: int, dst: int, src_offset: int, dst_offset: int, count: int) -> int:
    """Copy up to ``count`` bytes between two regular files at the given offsets, in the kernel
    where it can (``copy_file_range``; ``sendfile`` across file systems that refuse it); the
    bytes copied (fewer only at the source's end of file)."""
    done = 0
    while done < count:
        try:
            n = os.copy_file_range(src, dst, count - done, src_offset + done, dst_offset + done)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            return done + _sendfile_range(src, dst, src_offset + done, dst_offset + done,
                                          count - done)
        if n == 0:
            break
        done += n
    return done


def _sendfile_range(src: int, dst: int, src_offset: int, dst_offset: int, count: int) -> int:
    os.lseek(dst, dst_offset, os.SEEK_SET)  # sendfile writes at the destination's position
    done = 0
    while done < count:
        n = os.sendfile(dst, src, src_offset + done, count - done)
        if n == 0:
            break
        done += n
    return done


def _regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _count(request: Mapping[str, Any], key: str) -> int:
    value = request.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Refused(400, f"{key} must be a non-negative integer")
    return value


async def upload(app: web.Application, channel: Channel) -> None:
    """``{"op": "upload", "url": U, "offset": N, "length": L}`` + the client's file: copy
    ``L`` bytes from ``N`` onto the staged part, as one tus ``PATCH`` at offset ``N`` would."""
    src, query = _file_and_query(channel)
    offset, length = _count(channel.request, "offset"), _count(channel.request, "length")
    store = app[FOLDER_STORE]
    up, part, root, dst_dir = upload_for(store, query)
    async with up.lock:
        current = part.stat().st_size if part.exists() else 0
        if up.done or offset != current:
            raise offset_mismatch(up.size if up.done else current, offset)
        if current + length > up.size:
            raise too_long(up)
        dst = await asyncio.to_thread(os.open, part, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            await _copy_steps(src, dst, offset, current, length, up.size, channel.tell)
        finally:
            os.close(dst)
            # What arrived stays, as with a cut PATCH; complete: the file moves into place.
            reached = await commit_if_complete(store, up, part, root, dst_dir)
    await channel.tell({"offset": reached, "size": up.size, "done": True})


async def download(app: web.Application, channel: Channel) -> None:
    """``{"op": "download", "url": U, "offset": N}`` + the client's (writable) file: copy the
    folder's file from ``N`` into it at the same offsets, as a ``GET`` with ``Range`` would."""
    dst, query = _file_and_query(channel)
    offset = _count(channel.request, "offset")
    path = download_path(app[FOLDER_STORE], query)
    src = await asyncio.to_thread(_open_regular, path)
    try:
        size = os.fstat(src).st_size
        if offset > size or (offset and offset == size):  # as HTTP's 416
            raise Refused(416, f"offset {offset} is past the file's {size} bytes")
        reached = await _copy_steps(src, dst, offset, offset, size - offset, size, channel.tell)
    finally:
        os.close(src)
    await channel.tell({"offset": reached, "size": size, "done": reached == size})


def _file_and_query(channel: Channel) -> tuple[int, Mapping[str, str]]:
    url = channel.request.get("url")
    if not isinstance(url, str):
        raise Refused(400, "url (the storage URL with its token) is required")
    if channel.fd < 0 or not _regular(channel.fd):
        raise Refused(400, "the attached descriptor is not a regular file")
    return channel.fd, URL(url).query


def _open_regular(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise Refused(404, "File not found") from None
    if not _regular(fd):
        os.close(fd)
        raise Refused(400, "not a regular file")
    return fd


async def _copy_steps(
    src: int, dst: int, src_offset: int, dst_offset: int, count: int, size: int, tell: Tell
) -> int:
    """Copy in :data:`COPY_STEP` pieces in a worker thread, telling the destination offset
    after each; the destination offset reached."""
    done = 0
    while done < count:
        step = min(COPY_STEP, count - done)
        n = await asyncio.to_thread(
            copy_range, src, dst, src_offset + done, dst_offset + done, step
        )
        done += n
        if n < step:  # the source ended early (it shrank): what arrived stays
            break
        if done < count and not await tell({"offset": dst_offset + done, "size": size}):
            break  # the client went away (an interrupted transfer): stop, keep what arrived
    return dst_offset + done
