"""Virtual folders (``client.folders``): everything under ``/folders`` plus file transfers.

Transfers go through the storage proxy on v6+ managers (``request-upload`` → tus 1.0.0
``HEAD``/``PATCH``; ``request-download`` → plain ``GET`` with ``Range`` resume), and through the
manager itself on v5 (multipart ``upload`` / ``multipart/mixed`` ``download``).

On v8+ managers (24.03+) a folder name is first resolved to its UUID with ``GET /folders/_/id``,
as the official 26.x client does: a bare name in a path only resolves within the caller's
personal project, while the UUID reaches project folders too.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import json
import os
import re
import stat as statmod
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, BinaryIO

import aiohttp
from yarl import URL

from ._exceptions import APIError, ClientError, ConfigError, ProtocolError
from ._fileio import WRITE_BATCH, BatchedFileWriter
from ._models import FolderInfo

if TYPE_CHECKING:
    from ._client import Client
    from ._http import HTTPTransport

__all__ = ["DEFAULT_CHUNK_SIZE", "Folders", "Progress", "normalize_file_entry", "normalize_listing"]

Progress = Callable[[int, int], None]
"""``progress(done_bytes, total_bytes)``, called after every chunk."""

DEFAULT_CHUNK_SIZE: int | None = None
"""Bytes per tus PATCH; ``None``: the whole (remaining) file in one PATCH, as the official client.

One long PATCH costs nothing in resumability: the storage proxy keeps what arrived when a
connection is cut, and the next PATCH starts at the offset ``HEAD`` reports.
"""
_REPORT_EVERY = 1024 * 1024  # download progress granularity (bytes)
_TUS_VERSION = "1.0.0"
_MAX_RETRIES = 5

# v8.20240315: ID-based folder lookup (``/folders/_/id``) and the trash bin.
_V_TRASH = (8, "20240315")
# v6.20220315 (22.03): hyphenated file routes, ``cloneable``, mkdir ``parents``/``exist_ok``.
_V_2203 = (6, "20220315")

_List = list  # ``list`` is shadowed by :meth:`Folders.list` inside the class body


# -- pure helpers --------------------------------------------------------------------------------


def _type_of(entry: Mapping[str, Any], mode: int | None) -> str:
    raw = entry.get("type")
    if isinstance(raw, str) and raw:
        kind = raw.lower()
        return {"dir": "directory", "link": "symlink", "regular": "file"}.get(kind, kind)
    if entry.get("symlink_target"):
        return "symlink"
    if mode is not None:
        if statmod.S_ISDIR(mode):
            return "directory"
        if statmod.S_ISLNK(mode):
            return "symlink"
        if statmod.S_ISREG(mode):
            return "file"
    return "file" if mode is None else "other"


def _mode_of(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"0o[0-7]+", text):
            return int(text, 8)
        if text.isdigit():
            return int(text)
    return None


def _timestamp(value: Any) -> str:
    """A float epoch or a string, as an ISO 8601 string (``""`` when unknown)."""
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), tz=timezone.utc).isoformat()
    text = str(value)
    try:
        return datetime.fromtimestamp(float(text), tz=timezone.utc).isoformat()
    except ValueError:
        return text


def normalize_file_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One listing entry as ``{name, type, size, mode, created, modified}``.

    ``type`` is ``"file"``, ``"directory"``, ``"symlink"`` or ``"other"``; ``mode`` is the integer
    ``st_mode`` (or ``None``); timestamps are ISO 8601 strings.
    """
    mode = _mode_of(entry.get("mode"))
    size = entry.get("size", 0)
    try:
        size_int = int(size)
    except (TypeError, ValueError):
        size_int = 0
    out: dict[str, Any] = {
        "name": str(entry.get("name", entry.get("filename", ""))),
        "type": _type_of(entry, mode),
        "size": size_int,
        "mode": mode,
        "created": _timestamp(entry.get("created", entry.get("ctime"))),
        "modified": _timestamp(entry.get("modified", entry.get("mtime"))),
    }
    if entry.get("symlink_target"):
        out["symlink_target"] = entry["symlink_target"]
    return out


def normalize_listing(payload: Any) -> list[dict[str, Any]]:
    """Normalise a ``GET /folders/{name}/files`` answer.

    Accepts the 22.03+ form ``{"items": [...]}``, the 20.03 form ``{"files": "<JSON string>"}``
    (also a list there), or a bare list.
    """
    entries: Any
    if isinstance(payload, list):
        entries = payload
    elif isinstance(payload, Mapping):
        if isinstance(payload.get("items"), list):
            entries = payload["items"]
        elif "files" in payload:
            entries = payload["files"]
            if isinstance(entries, (str, bytes)):
                try:
                    entries = json.loads(entries)
                except ValueError:
                    raise ProtocolError(
                        f"folder listing: 'files' is not valid JSON: {entries[:80]!r}"
                    ) from None
        else:
            raise ProtocolError(f"folder listing: unexpected answer {str(payload)[:80]!r}")
    else:
        raise ProtocolError(f"folder listing: unexpected answer {str(payload)[:80]!r}")
    if not isinstance(entries, list):
        raise ProtocolError(f"folder listing: expected a list, got {type(entries).__name__}")
    return [normalize_file_entry(e) for e in entries if isinstance(e, Mapping)]


def _remote_join(*parts: str) -> str:
    """Join remote path pieces, dropping empty and ``.`` pieces (``""`` is the folder root)."""
    kept = [p.strip("/") for p in parts if p.strip("/") not in ("", ".")]
    return str(PurePosixPath(*kept)) if kept else ""


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


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


class Folders:
    """``client.folders``: virtual folder management and transfers."""

    def __init__(self, client: Client) -> None:
        self._client = client

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def _http(self) -> HTTPTransport:
        return self._client.http

    def _at_least(self, version: tuple[int, str]) -> bool:
        return self._client.features.version >= version

    async def _key(self, name: str) -> str:
        """The path segment for a folder: its UUID on v8+ (as the 26.x SDK), else the name."""
        await self._client.connect()
        if not self._at_least(_V_TRASH) or _is_uuid(name):
            return name
        return await self.get_id(name)

    async def get_id(self, name: str) -> str:
        """The folder's UUID (v8+ managers: ``GET /folders/_/id``; older: from the info call)."""
        await self._client.connect()
        if _is_uuid(name):
            return name
        if self._at_least(_V_TRASH):
            data = await self._http.json("GET", "/folders/_/id", json={"name": name})
        else:
            data = await self._http.json("GET", f"/folders/{name}")
        if not isinstance(data, dict) or not data.get("id"):
            raise ProtocolError(f"folder {name!r}: no id in {str(data)[:80]!r}")
        return str(data["id"])

    # -- folders ---------------------------------------------------------------------------------

    async def list(self, all: bool = False, group_id: str | None = None) -> _List[FolderInfo]:
        await self._client.connect()
        data = await self._http.json(
            "GET", "/folders", params={"all": all, "group_id": group_id}
        )
        if not isinstance(data, _List):
            raise ProtocolError(f"GET /folders: expected a list, got {str(data)[:80]!r}")
        return [FolderInfo.from_json(d) for d in data if isinstance(d, dict)]

    async def list_hosts(self) -> dict[str, Any]:
        await self._client.connect()
        data = await self._http.json("GET", "/folders/_/hosts")
        return data if isinstance(data, dict) else {"default": None, "allowed": data}

    async def create(
        self,
        name: str,
        host: str | None = None,
        *,
        group: str | None = None,
        usage_mode: str = "general",
        permission: str = "rw",
        cloneable: bool = False,
    ) -> FolderInfo:
        """Create a folder. ``group`` must be a project UUID on 26.x managers."""
        await self._client.connect()
        body: dict[str, Any] = {
            "name": name,
            "host": host,
            "usage_mode": usage_mode,
            "permission": permission,
            "group": group,
        }
        if cloneable or self._at_least(_V_2203):
            body["cloneable"] = cloneable
        data = await self._http.json("POST", "/folders", json=body)
        if not isinstance(data, dict):
            raise ProtocolError(f"POST /folders: unexpected answer {str(data)[:80]!r}")
        return FolderInfo.from_json(data)

    async def info(self, name: str) -> FolderInfo:
        key = await self._key(name)
        data = await self._http.json("GET", f"/folders/{key}")
        if not isinstance(data, dict):
            raise ProtocolError(f"GET /folders/{key}: unexpected answer {str(data)[:80]!r}")
        return FolderInfo.from_json(data)

    async def delete(self, name: str, *, forever: bool = False) -> None:
        """Delete a folder: into the trash bin on v8+ (the name stays taken until it is emptied).

        ``forever=True`` then empties it from the trash (``delete-from-trash-bin``), freeing the
        name; this is what a user (non-admin) can do. Older managers delete immediately.
        """
        await self._client.connect()
        if not self._at_least(_V_TRASH):
            await self._http.request("DELETE", f"/folders/{name}")
            return
        folder_id = await self.get_id(name)
        # What the 26.9.6 CLI ``vfolder delete`` sends.
        await self._http.request("DELETE", "/folders", json={"id": folder_id})
        if forever:
            await self.delete_forever(folder_id)

    async def delete_forever(self, folder_id: str) -> None:
        """Permanently delete a folder that is in the trash (v8+; takes the UUID)."""
        await self._client.connect()
        await self._http.request("POST", "/folders/delete-from-trash-bin", json={"id": folder_id})

    async def restore(self, folder_id: str) -> None:
        """Take a folder out of the trash bin (v8+; takes the UUID)."""
        await self._client.connect()
        await self._http.request("POST", "/folders/restore-from-trash-bin", json={"id": folder_id})

    async def purge(self, folder_id: str) -> None:
        """Purge a folder's record (v8+; admins only on 26.x; takes the UUID)."""
        await self._client.connect()
        await self._http.request("POST", "/folders/purge", json={"id": folder_id})

    async def rename(self, name: str, new_name: str) -> None:
        key = await self._key(name)
        await self._http.request("POST", f"/folders/{key}/rename", json={"new_name": new_name})

    async def mkdir(
        self, name: str, path: str | Sequence[str], parents: bool = False, exist_ok: bool = False
    ) -> Any:
        key = await self._key(name)
        body: dict[str, Any] = {"path": path if isinstance(path, str) else _List(path)}
        if parents or exist_ok or self._at_least(_V_2203):
            body["parents"] = parents
            body["exist_ok"] = exist_ok
        return await self._http.json("POST", f"/folders/{key}/mkdir", json=body)

    async def list_files(self, name: str, path: str = "") -> _List[dict[str, Any]]:
        """Entries of ``path`` as dicts with name/type/size/mode/created/modified."""
        key = await self._key(name)
        data = await self._http.json("GET", f"/folders/{key}/files", params={"path": path})
        return normalize_listing(data)

    def _route(self, new: str, old: str) -> str:
        return new if self._at_least(_V_2203) else old

    async def rename_file(self, name: str, target_path: str, new_name: str) -> None:
        key = await self._key(name)
        route = self._route("rename-file", "rename_file")
        await self._http.request(
            "POST",
            f"/folders/{key}/{route}",
            json={"target_path": target_path, "new_name": new_name},
        )

    async def move_file(self, name: str, src: str, dst: str) -> None:
        key = await self._key(name)
        await self._http.request(
            "POST", f"/folders/{key}/move-file", json={"src": src, "dst": dst}
        )

    async def delete_files(
        self, name: str, files: str | Iterable[str], recursive: bool = False
    ) -> None:
        key = await self._key(name)
        route = self._route("delete-files", "delete_files")
        names = [files] if isinstance(files, str) else [str(f) for f in files]
        await self._http.request(
            "DELETE", f"/folders/{key}/{route}", json={"files": names, "recursive": recursive}
        )

    # -- sharing ---------------------------------------------------------------------------------

    async def invite(self, name: str, emails: Sequence[str], perm: str = "rw") -> Any:
        key = await self._key(name)
        return await self._http.json(
            "POST", f"/folders/{key}/invite", json={"perm": perm, "user_ids": _List(emails)}
        )

    async def invitations(self) -> _List[dict[str, Any]]:
        await self._client.connect()
        data = await self._http.json("GET", "/folders/invitations/list")
        items = data.get("invitations", []) if isinstance(data, dict) else data
        return [d for d in (items or []) if isinstance(d, dict)]

    async def accept_invitation(self, inv_id: str) -> None:
        await self._client.connect()
        await self._http.request("POST", "/folders/invitations/accept", json={"inv_id": inv_id})

    async def delete_invitation(self, inv_id: str) -> None:
        await self._client.connect()
        await self._http.request("DELETE", "/folders/invitations/delete", json={"inv_id": inv_id})

    async def share(self, name: str, emails: Sequence[str], perm: str = "rw") -> Any:
        """Share a project folder with users (admins; 22.03+)."""
        key = await self._key(name)
        return await self._http.json(
            "POST", f"/folders/{key}/share", json={"permission": perm, "emails": _List(emails)}
        )

    async def unshare(self, name: str, emails: Sequence[str]) -> Any:
        key = await self._key(name)
        return await self._http.json(
            "DELETE", f"/folders/{key}/unshare", json={"emails": _List(emails)}
        )

    async def leave(self, name: str) -> None:
        """Leave a folder shared with (invited to) the caller (22.03+)."""
        key = await self._key(name)
        await self._http.request("POST", f"/folders/{key}/leave", json={})

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
        """Upload a file, or a directory recursively, to ``remote_path`` (default: its name).

        Files go with ``sendfile(2)`` over plain HTTP, so memory use stays small whatever the file
        size. ``chunk_size`` caps the bytes per tus PATCH (default: the whole file in one). A
        dropped connection during a tus upload is resumed from the offset the storage proxy
        reports.
        """
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
            plan: _List[tuple[Path, str]] = []
            dirs: _List[str] = [remote] if remote else []
            for root, dirnames, filenames in os.walk(local):
                dirnames.sort()
                rel = Path(root).relative_to(local).as_posix()
                base = _remote_join(remote, rel)
                dirs.extend(_remote_join(base, d) for d in dirnames)
                plan.extend((Path(root) / f, _remote_join(base, f)) for f in sorted(filenames))
            if dirs and self._at_least(_V_2203):
                await self.mkdir(key, dirs, parents=True, exist_ok=True)
            else:
                for d in dirs:  # older managers take one path per call
                    with contextlib.suppress(APIError):
                        await self.mkdir(key, d)
        else:
            plan = [(local, remote)]
        sizes = [p.stat().st_size for p, _ in plan]
        total = sum(sizes)
        done = 0
        for (path, rpath), size in zip(plan, sizes, strict=True):
            base_done = done

            def report(n: int, _total: int, _base: int = base_done) -> None:
                if progress is not None:
                    progress(_base + n, total)

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
        await self._tus_upload(url, path, size, report, chunk_size)

    async def _tus_offset(self, url: URL) -> int:
        resp = await self._http.raw("HEAD", url, headers={"Tus-Resumable": _TUS_VERSION})
        return int(resp.headers.get("Upload-Offset", "0"))

    async def _tus_upload(
        self, url: URL, path: Path, size: int, report: Progress, chunk_size: int | None
    ) -> None:
        offset = await self._tus_offset(url)
        report(offset, size)
        failures = 0
        f: BinaryIO = await asyncio.to_thread(path.open, "rb")
        try:
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
                    # 409 = offset mismatch; connection errors: ask the server where it stands.
                    if isinstance(e, APIError) and e.status not in (409, 460) and e.status < 500:
                        raise
                    failures += 1
                    if failures > _MAX_RETRIES:
                        raise
                    if not isinstance(e, APIError) or e.status not in (409, 460):
                        await asyncio.sleep(min(0.5 * 2**failures, 8.0))
                    try:
                        offset = await self._tus_offset(url)
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
                new_offset = int(resp.headers.get("Upload-Offset", "-1"))
                if new_offset != offset + length:
                    raise ProtocolError(
                        f"tus PATCH: server is at offset {new_offset}, expected {offset + length}"
                    )
                offset = new_offset
                failures = 0
                if offset >= size:
                    break
        finally:
            await asyncio.to_thread(f.close)
        report(offset, size)

    async def _upload_v5(
        self, key: str, path: Path, remote: str, size: int, report: Progress
    ) -> None:
        f: IO[bytes] = await asyncio.to_thread(path.open, "rb")
        try:
            form = aiohttp.FormData()
            form.add_field(
                "src", f, filename=remote, content_type="application/octet-stream"
            )
            await self._http.request(
                "POST", f"/folders/{key}/upload", data=form, read_timeout=None
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
        for entry in await self.list_files(key, parent):
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
        """Download a file or a directory (recursively); return the local path written.

        ``local_path`` defaults to the remote basename in the current directory; if it is an
        existing directory the remote basename is created inside it. Files are written to
        ``<target>.part`` and renamed when complete; an existing ``.part`` is resumed with a
        ``Range`` request. ``chunk_size`` is how many received bytes are gathered per file
        write (one write in flight while the next batch arrives; memory ≈ two of them).
        """
        key = await self._key(name)
        remote = remote_path.strip("/")
        basename = PurePosixPath(remote).name or name
        target = Path(local_path) if local_path is not None else Path(basename)
        if target.is_dir():
            target = target / basename
        kind = await self._remote_type(key, remote)
        if kind == "directory":
            files: _List[tuple[str, Path, int]] = []
            await self._walk_remote(key, remote, target, files)
            total = sum(s for _, _, s in files)
            done = 0
            target.mkdir(parents=True, exist_ok=True)
            for rpath, lpath, size in files:
                base_done = done

                def report(n: int, _total: int, _base: int = base_done) -> None:
                    if progress is not None:
                        progress(_base + n, total)

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
        self, key: str, remote: str, local: Path, out: _List[tuple[str, Path, int]]
    ) -> None:
        for entry in await self.list_files(key, remote):
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
        failures = 0
        while True:
            try:
                await self._get_into(url, part, report, chunk_size)
                break
            except APIError as e:
                if e.status == 416 and part.exists():  # the .part is stale or complete
                    part.unlink()
                    continue
                raise
            except ClientError:
                failures += 1
                if failures > _MAX_RETRIES:
                    raise
                await asyncio.sleep(min(0.5 * 2**failures, 8.0))
        os.replace(part, target)

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
