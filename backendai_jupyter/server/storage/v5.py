"""v5 (20.03 manager) transfers: multipart ``upload``, ``multipart/mixed`` ``download``, and
``download_single``, served on the manager routes (only when ``api_version`` is ``v5.*``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import unquote

from aiohttp import BodyPartReader, MultipartWriter, web

from ...client._fileio import BatchedFileWriter
from ..manager.errors import invalid_api_params
from .context import _files_param, _flag, _folder, _params, _store
from .storage_proxy import _PIECE, _send_path
from .store import confine


async def upload_v5(request: web.Request) -> web.Response:
    f, root = await _folder(request, writable=True)
    store = _store(request)
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):  # no or a broken multipart body
        raise invalid_api_params("multipart/form-data body expected") from None
    count = 0
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or not part.filename:
            continue
        count += 1
        if count > 10:
            raise invalid_api_params("Too many files (at most 10)")
        # aiohttp's FormData percent-encodes the name (``a%2Fb.txt``): decode it, then confine.
        target = confine(root, unquote(part.filename), allow_root=False)
        fd, tmp_name = tempfile.mkstemp(suffix=".part", dir=store.staging_dir(f.host))
        tmp = Path(tmp_name)
        try:
            writer = BatchedFileWriter(fd)
            try:
                while chunk := await part.read_chunk(_PIECE):
                    await writer.write(chunk)
            finally:
                await writer.close()
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return web.Response(status=201)


async def download_v5(request: web.Request) -> web.StreamResponse:
    _, root = await _folder(request)
    params = await _params(request)
    files = _files_param(params)
    paths = [confine(root, rel, allow_root=False) for rel in files]
    for path, rel in zip(paths, files, strict=True):
        if not path.is_file():
            raise invalid_api_params(
                f'You cannot download "{rel}" because it is not a regular file.'
            )
    total = sum(p.stat().st_size for p in paths)
    writer = MultipartWriter("mixed")
    for path in paths:
        writer.append(path.open("rb"), {"Content-Encoding": "identity"})
    return web.Response(body=writer, headers={"X-TOTAL-PAYLOADS-LENGTH": str(total)})


async def download_single(request: web.Request) -> web.StreamResponse:
    f, root = await _folder(request)
    params = await _params(request)
    rel = params.get("file", params.get("path"))
    if not isinstance(rel, str):
        raise invalid_api_params("file is required")
    path = confine(root, rel)
    return await _send_path(request, _store(request), f.host, path, _flag(params.get("archive")))

