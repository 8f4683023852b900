"""Folder file transfers behind ``client.folders.upload`` / ``download``.

Transfers go through the storage proxy on v6+ managers (``request-upload`` → tus 1.0.0
``HEAD``/``PATCH``; ``request-download`` → plain ``GET`` with ``Range`` resume), and through the
manager itself on v5 (multipart ``upload`` / ``multipart/mixed`` ``download``). They hold the
retry and resume logic, which has nothing to do with folder management, hence this module;
:class:`~.folders.Folders` keeps the public methods and delegates here.

Resume: a cut connection, a refused connect or a 502/503/504 (a storage proxy restarting) is an
outage (:mod:`.outages`): the transfer waits with backoff for up to ``ClientConfig.outage_limit``
seconds and goes on from where the server stands — the tus offset ``HEAD`` reports, or the size
of the ``.part`` file as a ``Range`` — so nothing is sent or written twice. The magics and the
folder widget transfer through here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, BinaryIO

from yarl import URL

from ._exceptions import APIError, BackendAIError, ClientError, ConfigError, ProtocolError
from ._fileio import WRITE_BATCH, BatchedFileWriter
from ._folder_wire import _V_2203, _remote_join
from ._http_wrappers import multipart
from ._local_transfer import local_address, local_download, local_upload
from .outages import Outage, next_retry

if TYPE_CHECKING:
    from ._core import ClientCore, FolderIndex
    from ._http import HTTPTransport

__all__ = ["DEFAULT_CHUNK_SIZE", "Progress", "Transfers"]

Progress = Callable[[int, int], None]
"""``progress(done_bytes, total_bytes)``, called after every chunk."""

DEFAULT_CHUNK_SIZE: int | None = None
"""Bytes per tus PATCH; ``None``: the whole (remaining) file in one PATCH, as the official client.

One long PATCH costs nothing in resumability: the storage proxy keeps what arrived when a
connection is cut, and the next PATCH starts at the offset ``HEAD`` reports.
"""
_REPORT_EVERY = 1024 * 1024  # download progress granularity (bytes)
_TUS_VERSION = "1.0.0"


def _split_mixed(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """Split a ``multipart/mixed`` body into ``(filename, payload)`` pairs."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise ProtocolError(f"expected a multipart answer, got {content_type!r}")
    parts: list[tuple[str, bytes]] = []
    for part in msg.iter_parts():
        payload = part.get_payload(decode=True) or b""
        parts.append((str(part.get_filename() or ""), bytes(payload)))
    return parts


def _as_part_of_total(progress: Progress | None, done: int, total: int) -> Progress:
    """One file's ``report(n, size)`` as ``progress(done + n, total)`` of a multi-file transfer."""

    def report(n: int, _size: int) -> None:
        if progress is not None:
            progress(done + n, total)

    return report


class Transfers:
    """Uploads and downloads for one :class:`~.folders.Folders`.

    It asks ``folders`` for the folder key (UUID on v8+) and for listings and ``mkdir``, so that
    name resolution and version gates stay in one place.
    """

    def __init__(self, folders: FolderIndex, client: ClientCore) -> None:
        self._folders = folders
        self._client = client

    @property
    def _http(self) -> HTTPTransport:
        return self._client.http

    async def _key(self, name: str) -> str:
        return await self._folders._key(name)

    # -- upload ----------------------------------------------------------------------------------

    async def upload(
        self,
        name: str,
        local_path: Path | str,
        remote_path: str | None = None,
        *,
        progress: Progress | None = None,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    ) -> None:
        """:meth:`Folders.upload <.folders.Folders.upload>`: walk, plan, then one file at a time."""
        local = Path(local_path)
        if not local.exists():
            raise ConfigError(f"no such file or directory: {local}")
        if chunk_size is not None and chunk_size <= 0:
            raise ConfigError("chunk_size must be positive")
        remote = remote_path if remote_path is not None else local.name
        if remote.endswith("/"):  # "dir/" means "into dir"
            remote += local.name
        remote = _remote_join(remote)
        key = await self._key(name)
        if local.is_dir():
            plan: list[tuple[Path, str]] = []
            dirs: list[str] = [remote] if remote else []
            for root, dirnames, filenames in os.walk(local):
                dirnames.sort()
                rel = Path(root).relative_to(local).as_posix()
                base = _remote_join(remote, rel)
                dirs.extend(_remote_join(base, d) for d in dirnames)
                plan.extend((Path(root) / f, _remote_join(base, f)) for f in sorted(filenames))
            if dirs and self._client.features.version >= _V_2203:
                await self._folders.mkdir(key, dirs, parents=True, exist_ok=True)
            else:
                for d in dirs:  # older managers take one path per call
                    with contextlib.suppress(APIError):
                        await self._folders.mkdir(key, d)
        else:
            plan = [(local, remote)]
        sizes = [p.stat().st_size for p, _ in plan]
        total = sum(sizes)
        done = 0
        for (path, rpath), size in zip(plan, sizes, strict=True):
            report = _as_part_of_total(progress, done, total)
            await self._upload_file(key, path, rpath, size, report, chunk_size)
            done += size
        if progress is not None and not plan:
            progress(0, 0)

    async def _upload_file(
        self,
        key: str,
        path: Path,
        remote: str,
        size: int,
        report: Progress,
        chunk_size: int | None,
    ) -> None:
        if not remote:
            raise ConfigError("remote path must not be empty")
        if not self._client.features.storage_proxy_transfers:
            await self._upload_v5(key, path, remote, size, report)
            return
        info = await self._http.json(
            "POST", f"/folders/{key}/request-upload", json={"path": remote, "size": size}
        )
        if not isinstance(info, dict) or "url" not in info or "token" not in info:
            raise ProtocolError(f"request-upload: unexpected answer {str(info)[:80]!r}")
        url = URL(str(info["url"])).update_query(token=str(info["token"]))
        local = self._local(info) if chunk_size is None else None
        await self._tus_upload(url, path, size, report, chunk_size, local)

    def _local(self, info: dict[str, object]) -> str | None:
        """The endpoint's same-machine transfer socket, when it offers one and it is enabled."""
        return local_address(info) if self._client.config.local_transfers else None

    async def _tus_offset(self, url: URL) -> int:
        resp = await self._http.raw("HEAD", url, headers={"Tus-Resumable": _TUS_VERSION})
        return int(resp.headers.get("Upload-Offset", "0"))

    def _outage_limit(self) -> float:
        return self._client.config.outage_limit

    async def _wait_out(self, error: BackendAIError, outage: Outage | None) -> Outage:
        """Sleep before the next try if ``error`` is an outage; raise it otherwise."""
        outage, reconnecting = next_retry(error, outage, self._outage_limit())
        await asyncio.sleep(reconnecting.delay)
        return outage

    async def _tus_resume_offset(
        self, url: URL, outage: Outage | None
    ) -> tuple[int, Outage | None]:
        """The upload's offset on the server, waiting out an outage (a restarting proxy)."""
        while True:
            try:
                return await self._tus_offset(url), outage
            except (ClientError, APIError) as e:
                outage = await self._wait_out(e, outage)

    async def _tus_upload(
        self, url: URL, path: Path, size: int, report: Progress, chunk_size: int | None,
        local: str | None = None,
    ) -> None:
        offset, outage = await self._tus_resume_offset(url, None)
        report(offset, size)
        f: BinaryIO = await asyncio.to_thread(path.open, "rb")
        try:
            if local is not None and offset < size:
                offset, done = await self._tus_upload_local(local, url, f, offset, size, report)
                if done:
                    return
            while True:  # an empty file still takes one (empty) PATCH, which creates it
                length = size - offset if chunk_size is None else min(chunk_size, size - offset)
                headers = {
                    "Tus-Resumable": _TUS_VERSION,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Content-Length": str(length),
                }

                def sent(n: int, _base: int = offset) -> None:
                    report(_base + n, size)

                try:
                    resp = await self._http.send_file(
                        "PATCH", url, f, offset=offset, length=length, headers=headers,
                        content_type="application/offset+octet-stream", on_sent=sent,
                    )
                except (ClientError, APIError) as e:
                    # 409/460 = offset mismatch: ask the server where it stands, at once.
                    if not isinstance(e, APIError) or e.status not in (409, 460):
                        outage = await self._wait_out(e, outage)
                    try:
                        offset, outage = await self._tus_resume_offset(url, outage)
                    except APIError as head_error:
                        # 26.9.6 forgets a finished upload (HEAD: 404): when the cut PATCH was
                        # the last one, the server may have completed before the cut.
                        if head_error.status == 404 and offset + length == size:
                            offset = size
                            break
                        raise
                    report(offset, size)
                    if offset >= size:  # it completed after all (or nothing was left to send)
                        break
                    continue
                outage = None
                new_offset = int(resp.headers.get("Upload-Offset", "-1"))
                if new_offset != offset + length:
                    raise ProtocolError(
                        f"tus PATCH: server is at offset {new_offset}, expected {offset + length}"
                    )
                offset = new_offset
                if offset >= size:
                    break
        finally:
            await asyncio.to_thread(f.close)
        report(offset, size)

    async def _tus_upload_local(
        self, local: str, url: URL, f: BinaryIO, offset: int, size: int, report: Progress
    ) -> tuple[int, bool]:
        """Through the endpoint's same-machine socket: ``(size, True)`` once it took the rest
        of the file, else ``(offset, False)`` with the offset to go on from over HTTP."""
        reached = await local_upload(
            local, url, f.fileno(), offset, size - offset, lambda n, _t: report(n, size)
        )
        if reached is not None and reached >= size:
            report(size, size)
            return size, True
        offset, _ = await self._tus_resume_offset(url, None)  # wherever the endpoint stands
        return offset, False

    async def _upload_v5(
        self, key: str, path: Path, remote: str, size: int, report: Progress
    ) -> None:
        f: IO[bytes] = await asyncio.to_thread(path.open, "rb")
        try:
            await self._http.request(
                "POST",
                f"/folders/{key}/upload",
                data=multipart([("src", remote, f)]),
                read_timeout=None,
            )
        finally:
            f.close()
        report(size, size)

    # -- download --------------------------------------------------------------------------------

    async def _remote_type(self, key: str, remote: str) -> str:
        path = PurePosixPath(remote)
        if remote in ("", ".", "/"):
            return "directory"
        parent = "" if str(path.parent) == "." else str(path.parent)
        for entry in await self._folders.list_files(key, parent):
            if entry["name"] == path.name:
                return str(entry["type"])
        raise ConfigError(f"no such file or directory in the folder: {remote}")

    async def download(
        self,
        name: str,
        remote_path: str,
        local_path: Path | str | None = None,
        *,
        progress: Progress | None = None,
        chunk_size: int = WRITE_BATCH,
    ) -> Path:
        """:meth:`Folders.download <.folders.Folders.download>`: a file, or a tree walked first."""
        key = await self._key(name)
        remote = remote_path.strip("/")
        basename = PurePosixPath(remote).name or name
        target = Path(local_path) if local_path is not None else Path(basename)
        if target.is_dir():
            target = target / basename
        kind = await self._remote_type(key, remote)
        if kind == "directory":
            files: list[tuple[str, Path, int]] = []
            await self._walk_remote(key, remote, target, files)
            total = sum(s for _, _, s in files)
            done = 0
            target.mkdir(parents=True, exist_ok=True)
            for rpath, lpath, size in files:
                report = _as_part_of_total(progress, done, total)
                lpath.parent.mkdir(parents=True, exist_ok=True)
                await self._download_file(key, rpath, lpath, report, chunk_size)
                done += size
            return target

        def report_one(n: int, t: int) -> None:
            if progress is not None:
                progress(n, t)

        await self._download_file(key, remote, target, report_one, chunk_size)
        return target

    async def _walk_remote(
        self, key: str, remote: str, local: Path, out: list[tuple[str, Path, int]]
    ) -> None:
        for entry in await self._folders.list_files(key, remote):
            rpath = _remote_join(remote, entry["name"])
            if entry["type"] == "directory":
                (local / entry["name"]).mkdir(parents=True, exist_ok=True)
                await self._walk_remote(key, rpath, local / entry["name"], out)
            elif entry["type"] == "file":
                out.append((rpath, local / entry["name"], int(entry["size"])))

    async def _download_file(
        self, key: str, remote: str, target: Path, report: Progress, chunk_size: int
    ) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not self._client.features.storage_proxy_transfers:
            await self._download_v5(key, remote, target, report)
            return
        info = await self._http.json(
            "POST",
            f"/folders/{key}/request-download",
            json={"path": remote, "archive": False},
        )
        if not isinstance(info, dict) or "url" not in info or "token" not in info:
            raise ProtocolError(f"request-download: unexpected answer {str(info)[:80]!r}")
        url = URL(str(info["url"])).update_query(token=str(info["token"]))
        part = target.with_name(target.name + ".part")
        local = self._local(info)
        if local is not None and await self._download_local(local, url, part, report):
            os.replace(part, target)
            return
        outage: Outage | None = None
        while True:
            try:
                await self._get_into(url, part, report, chunk_size)
                break
            except APIError as e:
                if e.status == 416 and part.exists():  # the .part is stale or complete
                    part.unlink()
                    continue
                outage = await self._wait_out(e, outage)
            except ClientError as e:
                outage = await self._wait_out(e, outage)
        os.replace(part, target)

    async def _download_local(self, local: str, url: URL, part: Path, report: Progress) -> bool:
        """Whether the endpoint's same-machine socket wrote the whole file into ``part`` (which
        otherwise keeps what arrived, for the HTTP ``Range`` resume)."""
        fd = await asyncio.to_thread(os.open, part, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            offset = os.fstat(fd).st_size
            total = await local_download(local, url, fd, offset, report)
        finally:
            os.close(fd)
        return total is not None

    async def _get_into(self, url: URL, part: Path, report: Progress, chunk_size: int) -> None:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with self._http.stream("GET", "", url=url, headers=headers) as resp:
            append = resp.status == 206
            if not append:
                offset = 0
            length = resp.headers.get("Content-Length")
            total = offset + int(length) if length and length.isdigit() else -1
            writer = await BatchedFileWriter.open(part, append=append, batch=chunk_size)
            done = offset
            try:
                report(done, total)
                async for chunk in resp.iter_received():
                    await writer.write(chunk)
                    before, done = done, done + len(chunk)
                    if done // _REPORT_EVERY != before // _REPORT_EVERY:
                        report(done, total)
            finally:
                await writer.close()
            report(done, total)
        if total >= 0 and done != total:
            raise ClientError(f"download of {part.name} ended at {done} of {total} bytes")

    async def _download_v5(self, key: str, remote: str, target: Path, report: Progress) -> None:
        resp = await self._http.request(
            "GET", f"/folders/{key}/download", json={"files": [remote]}, read_timeout=None
        )
        ctype = resp.headers.get("Content-Type", "")
        if ctype.startswith("multipart/"):
            parts = _split_mixed(resp.body, ctype)
            if not parts:
                raise ProtocolError(f"download of {remote}: empty multipart answer")
            data = parts[0][1]
        else:
            data = resp.body
        part = target.with_name(target.name + ".part")
        await asyncio.to_thread(part.write_bytes, data)
        os.replace(part, target)
        report(len(data), len(data))
