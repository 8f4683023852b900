"""Storage-proxy transfers (v6+): signed tokens, tus uploads, token downloads.

``request-upload`` / ``request-download`` hand out an HMAC-signed, JWT-shaped token and an absolute
URL on this same server (``/storage-proxy/upload|download``). Uploads speak tus 1.0.0
(``OPTIONS``/``HEAD``/``PATCH``/``DELETE``) into ``<host dir>/.staging/<session>.part``; the file
appears at its real path only when complete (one ``os.replace``). Downloads are ``FileResponse`` s
(``Range``/``If-Range``), directories as a zip when ``archive`` is set. The storage-proxy side is
unauthenticated (the token is the credential), hence its own module.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
import time
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ...client._fileio import BatchedFileWriter
from ...client._local_transfer import LOCAL_TRANSFER_KEY
from ..manager.errors import Problem, invalid_api_params
from ..manager.local_socket import offered_address
from .context import _flag, _folder, _json, _params, _store
from .store import Folder, FolderStore, Upload, _op_failed, confine

STORAGE_PREFIX = "/storage-proxy"
TUS_MAX_SIZE = 1 << 40
_PIECE = 256 * 1024
_TOKEN_TTL = 24 * 3600
_EMPTY_SUFFIX = re.compile(r"\s*bytes\s*=\s*-\s*0+\s*")


def _storage_error(status: int, slug: str, title: str, msg: str | None = None) -> Problem:
    return Problem(status, f"storage/{slug}", title, msg)


def _storage_bad(msg: str) -> Problem:
    return _storage_error(400, "invalid-api-params", "Invalid API parameters", msg)


# -- tokens ---------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(secret: bytes, payload: dict[str, Any]) -> str:
    """An HS256 JWT (what the storage proxy hands out), built with the stdlib."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def verify_token(secret: bytes, token: str, op: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise _storage_bad("cannot decode the given value as JWT: Not enough segments")
    expected = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        ok = hmac.compare_digest(expected, _unb64(parts[2]))
        payload = json.loads(_unb64(parts[1]))
    except (ValueError, TypeError):
        raise _storage_bad("cannot decode the given value as JWT") from None
    if not ok or not isinstance(payload, dict):
        raise _storage_bad("cannot decode the given value as JWT: Signature verification failed")
    if payload.get("op") != op:
        raise _storage_bad(f"the token is not for {op}")
    if float(payload.get("exp", 0)) < time.time():
        raise _storage_bad("cannot decode the given value as JWT: Signature has expired")
    return payload


# -- storage-proxy transfers (v6+) ----------------------------------------------------------------


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}{STORAGE_PREFIX}"


async def request_upload(request: web.Request) -> web.Response:
    f, root = await _folder(request, writable=True)
    params = await _params(request)
    rel, size = params.get("path"), params.get("size")
    try:
        size_int = int(size)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise invalid_api_params("size must be an integer") from None
    if not isinstance(rel, str) or size_int < 0:
        raise invalid_api_params("path and a non-negative size are required")
    free = shutil.disk_usage(root).free
    if size_int > free:
        raise invalid_api_params(
            f"size {size_int} is larger than the free space of the folder's volume ({free})")
    dst_dir = _dst_dir_param(params)
    confine(root, _destination(rel, dst_dir), allow_root=False)
    store = _store(request)
    session = uuid.uuid4().hex
    store.uploads[session] = Upload(session, f.id, rel, size_int)
    token = sign_token(store.secret, {
        "op": "upload", "volume": f.host, "vfid": f.id, "relpath": rel, "size": size_int,
        "dst_dir": dst_dir, "session": session, "exp": int(time.time()) + _TOKEN_TTL,
    })
    if size_int == 0:  # nothing to PATCH: the (empty) file exists right away
        await _finish_upload(store, store.uploads[session], root, dst_dir)
    return _json(_with_local({"token": token, "url": f"{_base_url(request)}/upload"}, request))


async def request_download(request: web.Request) -> web.Response:
    f, root = await _folder(request)
    params = await _params(request)
    rel = params.get("path", params.get("file"))
    if not isinstance(rel, str):
        raise invalid_api_params("path is required")
    dst_dir = _dst_dir_param(params)
    confine(root, _destination(rel, dst_dir))
    store = _store(request)
    token = sign_token(store.secret, {
        "op": "download", "volume": f.host, "vfid": f.id, "relpath": rel, "dst_dir": dst_dir,
        "archive": _flag(params.get("archive")), "exp": int(time.time()) + _TOKEN_TTL,
    })
    return _json(_with_local({"token": token, "url": f"{_base_url(request)}/download"}, request))


def _with_local(answer: dict[str, str], request: web.Request) -> dict[str, str]:
    """A loopback client also learns the same-machine socket (``local_transfer.py``): other
    clients could not reach it."""
    address = offered_address(request)
    if address is not None:
        answer[LOCAL_TRANSFER_KEY] = address
    return answer


_TUS_HEADER_NAMES = "Tus-Resumable, Upload-Length, Upload-Metadata, Upload-Offset, Content-Type"


def _tus_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {
        "Tus-Resumable": "1.0.0",
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "*",
        "Access-Control-Allow-Headers": _TUS_HEADER_NAMES,
        "Access-Control-Expose-Headers": _TUS_HEADER_NAMES,
    }
    headers.update(extra or {})
    return headers


def _progress_headers(offset: int, up: Upload) -> dict[str, str]:
    """What ``HEAD`` and ``PATCH`` both report: how far the upload has got."""
    return _tus_headers({
        "Upload-Offset": str(offset),
        "Upload-Length": str(up.size),
        "Cache-Control": "no-store",
    })


def _received(up: Upload, part: Path) -> int:
    """Bytes received so far: the staged part's size, or all of it once moved into place."""
    return up.size if up.done else (part.stat().st_size if part.exists() else 0)


def _dst_dir_param(params: dict[str, Any]) -> str | None:
    dst_dir = params.get("dst_dir")
    if dst_dir is not None and not isinstance(dst_dir, str):
        raise invalid_api_params("dst_dir must be a string")
    return dst_dir or None


def _destination(relpath: str, dst_dir: str | None) -> str:
    return str(PurePosixPath(dst_dir) / relpath) if dst_dir else relpath


def _same_dir(a: str | None, b: str | None) -> bool:
    return (a is None and b is None) or (
        a is not None and b is not None and PurePosixPath(a) == PurePosixPath(b)
    )


def _claimed_dst_dir(query: Mapping[str, str], claims: dict[str, Any]) -> str | None:
    """The destination directory the token covers. A ``dst_dir`` query parameter is accepted
    only when it names the same directory: the token, not the URL, decides where bytes go."""
    claimed = claims.get("dst_dir") or None
    asked = query.get("dst_dir") or None
    if asked is not None and not _same_dir(asked, claimed):
        raise _dst_dir_not_covered()
    return str(claimed) if claimed else None


def _dst_dir_not_covered() -> Problem:
    return _storage_bad(
        "dst_dir is not covered by the token (pass it to request-upload/request-download)"
    )


def _upload_dst_dir(query: Mapping[str, str], claims: dict[str, Any], up: Upload) -> str | None:
    """An upload's destination directory. The token's when it has one; otherwise the official
    client's way (``dst_dir`` only in the storage-proxy URL, which request-upload never sees)
    binds the upload to the directory its *first* request names, and every later request of
    the upload must name the same one."""
    if claims.get("dst_dir"):
        return _claimed_dst_dir(query, claims)
    asked = query.get("dst_dir") or None
    if not up.dst_bound:
        up.dst_dir, up.dst_bound = asked, True
    elif not _same_dir(asked, up.dst_dir):
        raise _dst_dir_not_covered()
    return up.dst_dir


def _upload_of(
    request: web.Request,
) -> tuple[FolderStore, Upload, Path, Path, str | None]:
    """The upload a token names: store, upload, staged part, folder root, destination dir."""
    store = _store(request)
    query = dict(request.query)
    query.setdefault("token", request.match_info.get("token", ""))
    return (store, *upload_for(store, query))


def upload_for(
    store: FolderStore, query: Mapping[str, str]
) -> tuple[Upload, Path, Path, str | None]:
    """The upload a storage URL's query names (``token``, ``dst_dir``): upload, staged part,
    folder root, destination dir. HTTP and the same-machine socket both ask here."""
    claims = verify_token(store.secret, query.get("token") or "", "upload")
    f = store.folders.get(str(claims.get("vfid")))
    if f is None or f.status != "ready":
        raise _storage_error(404, "vfolder-not-found", "VFolder not found")
    session = str(claims["session"])
    up = store.uploads.get(session)
    if up is None:  # after a restart: the token still describes the upload
        up = Upload(session, f.id, str(claims["relpath"]), int(claims["size"]))
        store.uploads[session] = up
    dst_dir = _upload_dst_dir(query, claims, up)
    if dst_dir is not None:
        confine(store.folder_dir(f), _destination(up.relpath, dst_dir), allow_root=False)
    part = store.staging_dir(f.host) / f"{session}.part"
    return up, part, store.folder_dir(f), dst_dir


async def _finish_upload(
    store: FolderStore, up: Upload, root: Path, dst_dir: str | None, part: Path | None = None
) -> None:
    rel = _destination(up.relpath, dst_dir)
    target = confine(root, rel, allow_root=False)

    def move() -> None:
        if target.is_dir():
            raise _op_failed(f"a directory is in the way: {rel!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if part is None:
            target.touch()
        else:
            os.replace(part, target)

    await asyncio.to_thread(move)
    up.done = True


async def tus_options(request: web.Request) -> web.Response:
    return web.Response(status=200, headers=_tus_headers({
        "Tus-Version": "1.0.0",
        "Tus-Max-Size": str(TUS_MAX_SIZE),
        "Tus-Extension": "termination",
    }))


async def tus_head(request: web.Request) -> web.Response:
    _, up, part, _, _ = _upload_of(request)
    return web.Response(status=200, headers=_progress_headers(_received(up, part), up))


async def tus_patch(request: web.Request) -> web.Response:
    store, up, part, root, dst_dir = _upload_of(request)
    raw_offset = request.headers.get("Upload-Offset", "")
    if not raw_offset.isascii() or not raw_offset.isdigit():
        raise _storage_bad("Upload-Offset header is required")
    offset = int(raw_offset)
    declared = request.content_length
    async with up.lock:
        current = _received(up, part)
        if offset != current or up.done:
            raise offset_mismatch(current, offset)
        if declared is not None and current + declared > up.size:
            raise too_long(up)
        overflow = False
        try:
            # The body's pieces as they arrive, written in batches of a few MiB by one worker
            # thread while the next batch arrives. ``readany`` returns b"" at the end of the body
            # (also of an empty one, where iterating chunks would never end).
            writer = await BatchedFileWriter.open(part, append=True)
            try:
                received = current
                while chunk := await request.content.readany():
                    if received + len(chunk) > up.size:
                        overflow = True
                        break
                    received += len(chunk)
                    await writer.write(chunk)
            finally:
                await writer.close()
        finally:
            # A cut connection keeps what arrived: HEAD reports it and the client resumes there.
            # A body longer than declared is refused whole: the part goes back to where this
            # request started, and nothing is committed.
            if overflow:
                await asyncio.to_thread(_truncate, part, current)
                written = current
            else:
                written = await commit_if_complete(store, up, part, root, dst_dir)
        if overflow:
            raise too_long(up)
    return web.Response(status=204, headers=_progress_headers(written, up))


async def commit_if_complete(
    store: FolderStore, up: Upload, part: Path, root: Path, dst_dir: str | None
) -> int:
    """The staged part's size; when that is the whole upload, the file moves into place.
    Called under the upload's lock, after every PATCH (or socket copy), cut or not."""
    written = part.stat().st_size if part.exists() else 0
    if written == up.size and not up.done:
        if not part.exists():
            part.touch()
        await _finish_upload(store, up, root, dst_dir, part)
    return written


def offset_mismatch(current: int, offset: int) -> Problem:
    return _storage_error(
        409, "upload-offset-mismatch", "Upload Offset Mismatch",
        f"Upload offset mismatch: expected {current}, got {offset}",
    )


def too_long(up: Upload) -> Problem:
    return _storage_bad(f"the upload exceeds its declared size ({up.size} bytes)")


def _truncate(part: Path, size: int) -> None:
    with part.open("r+b") as f:
        f.truncate(size)


async def tus_delete(request: web.Request) -> web.Response:
    store, up, part, _, _ = _upload_of(request)
    async with up.lock:
        part.unlink(missing_ok=True)
        store.uploads.pop(up.session, None)
    return web.Response(status=204, headers=_tus_headers())


def _zip_dir(src: Path, dest: Path) -> None:
    base = src.resolve()
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for dirpath, dirnames, filenames in os.walk(base):
            for name in sorted(dirnames + filenames):
                path = Path(dirpath) / name
                real = path.resolve()
                if not real.is_relative_to(base):  # never archive what a symlink points outside
                    continue
                arc = path.relative_to(base).as_posix()
                if path.is_dir():
                    zf.write(path, arc + "/")
                elif path.is_file():
                    zf.write(path, arc)


def _disposition(name: str) -> str:
    return f"attachment;filename=\"{name}\"; filename*=UTF-8''{quote(name)}"


async def _send_path(
    request: web.Request, store: FolderStore, host: str, path: Path, archive: bool
) -> web.StreamResponse:
    if path.is_file():
        if _EMPTY_SUFFIX.fullmatch(request.headers.get("Range", "")):
            # "the last 0 bytes" is unsatisfiable (RFC 9110 §14.1.3); aiohttp would send all.
            return web.Response(status=416, headers={
                "Content-Range": f"bytes */{path.stat().st_size}",
            })
        return web.FileResponse(path, headers={
            "Content-Disposition": _disposition(path.name),
            "Content-Type": "application/octet-stream",
        })
    if not path.exists():
        raise Problem(404, "storage/file-not-found", "File not found")
    if not path.is_dir() or not archive:
        raise _storage_bad("The file is not a regular file.")
    fd, tmp_name = tempfile.mkstemp(suffix=".zip", dir=store.staging_dir(host))
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        await asyncio.to_thread(_zip_dir, path, tmp)
        size = tmp.stat().st_size
        name = (path.name or "archive") + ".zip"
        resp = web.StreamResponse(headers={
            "Content-Type": "application/zip",
            "Content-Disposition": _disposition(name),
        })
        resp.content_length = size
        await resp.prepare(request)
        if request.method != "HEAD":
            with tmp.open("rb") as fobj:
                while chunk := await asyncio.to_thread(fobj.read, _PIECE):
                    await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        tmp.unlink(missing_ok=True)


def _download_claims(
    store: FolderStore, query: Mapping[str, str]
) -> tuple[dict[str, Any], Folder, Path]:
    claims = verify_token(store.secret, query.get("token", ""), "download")
    f = store.folders.get(str(claims.get("vfid")))
    if f is None or f.status != "ready":
        raise Problem(404, "storage/file-not-found", "File not found")
    rel = _destination(str(claims.get("relpath", "")), _claimed_dst_dir(query, claims))
    return claims, f, confine(store.folder_dir(f), rel)


def download_path(store: FolderStore, query: Mapping[str, str]) -> Path:
    """The file a download URL's query names (HTTP and the same-machine socket)."""
    return _download_claims(store, query)[2]


async def download(request: web.Request) -> web.StreamResponse:
    store = _store(request)
    claims, f, path = _download_claims(store, request.query)
    archive = _flag(claims.get("archive")) or _flag(request.query.get("archive"))
    return await _send_path(request, store, f.host, path, archive)

