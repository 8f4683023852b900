"""The answer to a session file download, taken apart: the server sends one tar archive per
requested path, as the parts of a ``multipart/mixed`` body.

Apart from ``sessions.py`` because these are pure functions on bytes (no client, no network),
tested on their own.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

__all__ = ["extract_tar", "split_multipart"]


def split_multipart(body: bytes, content_type: str) -> list[bytes]:
    """Split a ``multipart/mixed`` body into part payloads (headers dropped)."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        return [body] if body else []
    parts: list[bytes] = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        _headers, _, payload = chunk.partition(b"\r\n\r\n")
        parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return parts


def extract_tar(data: bytes, dest: Path) -> list[Path]:
    """Write one part's tar archive's regular files under ``dest``; members with absolute
    paths or ``..`` are skipped (never written outside ``dest``). Returns the files written."""
    written: list[Path] = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            target = PurePosixPath(member.name)
            if target.is_absolute() or ".." in target.parts or not member.isfile():
                continue
            out = dest.joinpath(*target.parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            if src is None:
                continue
            out.write_bytes(src.read())
            written.append(out)
    return written
