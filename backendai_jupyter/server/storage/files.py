"""``/folders/{name}/…`` file operations: mkdir, list, rename, move, delete.

The blocking filesystem work runs in worker threads; each path is confined to its folder first.
Errors answer ``{"msg": ...}`` problems the way 26.9.6 does (``vfolder-operation-failed``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat as statmod
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web

from ..manager.errors import Problem, invalid_api_params
from .context import _files_param, _flag, _folder, _json, _ok, _params
from .store import _iso, _op_failed, confine


def _mkdir_one(root: Path, rel: Any, parents: bool, exist_ok: bool) -> None:
    target = confine(root, rel, allow_root=False)
    target.mkdir(parents=parents, exist_ok=exist_ok)


async def mkdir(request: web.Request) -> web.Response:
    _, root = await _folder(request, writable=True)
    params = await _params(request)
    paths = params.get("path")
    parents, exist_ok = _flag(params.get("parents")), _flag(params.get("exist_ok"))
    many = isinstance(paths, list)
    items = paths if isinstance(paths, list) else [paths]
    if not items or len(items) > 50:
        raise invalid_api_params("path must be a string or a list of 1..50 strings")
    success: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for rel in items:
        try:
            await asyncio.to_thread(_mkdir_one, root, rel, parents, exist_ok)
        except OSError as e:
            if not many:
                raise _op_failed(f"{type(e).__name__}: {e.strerror or e}") from None
            failed.append({"msg": f"{type(e).__name__}({e.errno}, {e.strerror!r})", "item": rel})
        except Problem as e:
            if not many:
                raise
            failed.append({"msg": e.msg, "item": rel})
        else:
            success.append({"msg": None, "item": rel})
    return _json({"results": {"success": success, "failed": failed}})


def _entry_type(mode: int) -> str:
    if statmod.S_ISLNK(mode):
        return "SYMLINK"
    if statmod.S_ISDIR(mode):
        return "DIRECTORY"
    return "FILE"


def _listing(root: Path, rel: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    target = confine(root, rel if rel is not None else "")
    if not target.is_dir():
        raise _op_failed(f"no such directory: {rel!r}")
    items: list[dict[str, Any]] = []
    legacy: list[dict[str, Any]] = []
    for entry in sorted(os.scandir(target), key=lambda e: e.name):
        st = entry.stat(follow_symlinks=False)
        items.append({
            "name": entry.name,
            "type": _entry_type(st.st_mode),
            "size": st.st_size,
            "mode": st.st_mode,
            "created": _iso(st.st_ctime),
            "modified": _iso(st.st_mtime),
        })
        legacy.append({
            "mode": statmod.filemode(st.st_mode),
            "size": st.st_size,
            "ctime": st.st_ctime,
            "mtime": st.st_mtime,
            "atime": st.st_atime,
            "filename": entry.name,
            "symlink_target": os.readlink(entry.path) if entry.is_symlink() else "",
        })
    return items, legacy


async def list_files(request: web.Request) -> web.Response:
    _, root = await _folder(request)
    params = await _params(request)
    items, legacy = await asyncio.to_thread(_listing, root, params.get("path", ""))
    return _json({"items": items, "files": json.dumps(legacy)})


def _rename(root: Path, src_rel: Any, dst_rel: Any, *, into_dir: bool) -> None:
    src = confine(root, src_rel, follow=False, allow_root=False)
    if not os.path.lexists(src):
        raise _op_failed(f"no such file or directory: {src_rel!r}")
    dst = confine(root, dst_rel, follow=False, allow_root=not into_dir)
    if into_dir and dst.is_dir() and not dst.is_symlink():
        dst = confine(root, str(PurePosixPath(dst_rel) / src.name), follow=False)
    if os.path.lexists(dst):
        raise _op_failed(f"destination already exists: {dst_rel!r}")
    if dst == src or dst.is_relative_to(src):
        raise _op_failed("cannot move a directory into itself")
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.rename(src, dst)


async def rename_file(request: web.Request) -> web.Response:
    _, root = await _folder(request, writable=True)
    params = await _params(request)
    target, new_name = params.get("target_path"), params.get("new_name")
    if not isinstance(target, str) or not isinstance(new_name, str) or not new_name:
        raise invalid_api_params("target_path and new_name are required")
    if "/" in new_name or new_name in (".", ".."):
        raise _op_failed(f"new_name must be a plain name: {new_name!r}")
    dst = str(PurePosixPath(target).parent / new_name)
    await asyncio.to_thread(_rename, root, target, dst, into_dir=False)
    return _ok()


async def move_file(request: web.Request) -> web.Response:
    _, root = await _folder(request, writable=True)
    params = await _params(request)
    src, dst = params.get("src"), params.get("dst")
    if not isinstance(src, str) or not isinstance(dst, str):
        raise invalid_api_params("src and dst are required")
    await asyncio.to_thread(_rename, root, src, dst, into_dir=True)
    return _ok()


def _delete(root: Path, files: list[Any], recursive: bool) -> None:
    targets = [confine(root, rel, follow=False, allow_root=False) for rel in files]
    for path, rel in zip(targets, files, strict=True):
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            if recursive:
                shutil.rmtree(path)
            else:
                try:
                    path.rmdir()
                except OSError:
                    raise _op_failed(f"directory not empty (use recursive): {rel!r}") from None
        # a missing path is not an error (26.9.6)


async def delete_files(request: web.Request) -> web.Response:
    _, root = await _folder(request, writable=True)
    params = await _params(request)
    files = _files_param(params)
    await asyncio.to_thread(_delete, root, files, _flag(params.get("recursive")))
    return _ok()

