"""``/folders`` routes on folders themselves: hosts, create, list, info, trash bin, rename, options.

Answers follow the 26.9.6 manager as observed on a real one (204 for deletes, the trash bin from
API v8.20240315 on, UUID or name in paths).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from ..manager.errors import Problem, invalid_api_params
from ..manager.state import CONFIG
from .context import _flag, _json, _ok, _owned, _params, _store, _whoami
from .store import _FOLDER_PERMS, _USAGE_MODES, DEFAULT_HOST, Folder, FolderStore


def _item(store: FolderStore, f: Folder, ak: str, email: str) -> dict[str, Any]:
    own = f.owner == ak
    perm = f.permission if own else store.shared_with(email).get(f.id, "ro")
    return {
        "id": f.id,
        "name": f.name,
        "quota_scope_id": f"user:{f.user}",
        "host": f.host,
        "usage_mode": f.usage_mode,
        "created_at": f.created_at,
        "permission": perm,
        "creator": f.creator,
        "ownership_type": "group" if f.group else "user",
        "user": f.user,
        "group": f.group,
        "cloneable": f.cloneable,
        "status": f.status,
        "is_owner": own,
        "max_size": 0,
        "user_email": "",
        "group_name": "",
        "type": "",
        "max_files": 0,
        "cur_size": 0,
    }


def _usage(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        files += len(filenames) + len(dirnames)
        for name in filenames:
            try:
                size += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return files, size


# -- folder handlers ------------------------------------------------------------------------------


async def list_hosts(request: web.Request) -> web.Response:
    store = _store(request)
    root = store.host_dir(DEFAULT_HOST)
    root.mkdir(parents=True, exist_ok=True)
    du = shutil.disk_usage(root)
    return _json({
        "default": DEFAULT_HOST,
        "allowed": [DEFAULT_HOST],
        "volume_info": {
            DEFAULT_HOST: {
                "backend": "vfs",
                "capabilities": ["vfolder"],
                "usage": {"percentage": 100.0 * du.used / du.total if du.total else 0.0},
                "sftp_scaling_groups": [],
            }
        },
    })


async def list_all_hosts(request: web.Request) -> web.Response:
    return _json({"default": DEFAULT_HOST, "allowed": [DEFAULT_HOST]})


async def allowed_types(request: web.Request) -> web.Response:
    return _json(["user"])


async def get_id(request: web.Request) -> web.Response:
    ak, email, _ = _whoami(request)
    params = await _params(request)
    name = params.get("name")
    if not isinstance(name, str) or not name:
        raise invalid_api_params("name is required")
    # Trashed folders resolve too: the 26.x CLI looks the id up before ``delete-trash``/restore.
    f = _store(request).find(ak, email, name, trashed=None)
    return _json({"id": str(uuid.UUID(f.id)), "name": f.name})


async def create(request: web.Request) -> web.Response:
    ak, email, uid = _whoami(request)
    store = _store(request)
    params = await _params(request)
    name = params.get("name")
    if not isinstance(name, str) or not name.strip():
        raise invalid_api_params("name is required")
    if "/" in name or "\x00" in name or name in (".", "..") or len(name) > 64:
        raise invalid_api_params(f"invalid folder name: {name!r}")
    if name.startswith("_"):  # "/folders/_/..." is the manager's utility namespace
        raise invalid_api_params("folder names must not start with '_'")
    host = params.get("host") or params.get("folder_host") or DEFAULT_HOST
    if host != DEFAULT_HOST:
        raise Problem(
            400, "storage-permission-not-allowed",
            "The specified storage permission is not allowed.",
            f"`create-vfolder` Not allowed in vfolder host(`{host}`)",
        )
    if params.get("unmanaged_path"):
        raise Problem(403, "generic-forbidden", "Forbidden operation.", "Insufficient permission")
    usage_mode = params.get("usage_mode") or "general"
    permission = params.get("permission") or "rw"
    if usage_mode not in _USAGE_MODES:
        raise invalid_api_params(f"usage_mode must be one of {', '.join(_USAGE_MODES)}")
    if permission not in _FOLDER_PERMS:
        raise invalid_api_params(f"permission must be one of {', '.join(_FOLDER_PERMS)}")
    # Names stay taken while a folder sits in the trash bin (as on 24.03+ managers).
    if any(f.name == name and f.owner == ak for f in store.folders.values()):
        raise Problem(
            400, "vfolder-already-exists",
            "The virtual folder already exists with the same name.",
            f"VFolder with the given name already exists. ({name})",
        )
    group = params.get("group") or params.get("group_id")
    f = Folder(
        id=uuid.uuid4().hex, name=name, host=host, owner=ak, user=uid, creator=email,
        usage_mode=usage_mode, permission=permission, cloneable=_flag(params.get("cloneable")),
        group=str(group) if group else None,
    )
    store.folder_dir(f).mkdir(parents=True, exist_ok=True)
    store.folders[f.id] = f
    store.save()
    item = _item(store, f, ak, email)
    item["created_at"] = ""  # 26.9.6 answers an empty created_at here
    return _json(item, status=201)


async def list_folders(request: web.Request) -> web.Response:
    ak, email, _ = _whoami(request)
    store = _store(request)
    folders = store.accessible(ak, email)
    folders.sort(key=lambda f: f.created_at)
    return _json([_item(store, f, ak, email) for f in folders])


async def get_info(request: web.Request) -> web.Response:
    ak, email, _ = _whoami(request)
    store = _store(request)
    f = store.find(ak, email, request.match_info["name"], trashed=None)
    root = store.folder_dir(f)
    num_files, used = await asyncio.to_thread(_usage, root) if root.exists() else (0, 0)
    item = _item(store, f, ak, email)
    return _json({
        "name": f.name,
        "id": f.id,
        "quota_scope_id": item["quota_scope_id"],
        "host": f.host,
        "status": f.status,
        "numFiles": num_files,
        "num_files": num_files,
        "used_bytes": used,
        "created_at": f.created_at,
        "created": f.created_at,
        "last_used": f.created_at,
        "user": f.user,
        "group": f.group,
        "type": "group" if f.group else "user",
        "is_owner": item["is_owner"],
        "permission": item["permission"],
        "usage_mode": f.usage_mode,
        "cloneable": f.cloneable,
    })


def _trash(request: web.Request, f: Folder) -> web.Response:
    store = _store(request)
    f.status = "delete-pending"
    for inv in list(store.invitations.values()):
        if inv.vfolder_id.replace("-", "") == f.id and inv.state == "pending":
            del store.invitations[inv.id]
    store.save()
    return web.Response(status=204)


async def _purge(request: web.Request, f: Folder) -> web.Response:
    store = _store(request)
    await asyncio.to_thread(shutil.rmtree, store.folder_dir(f), True)
    del store.folders[f.id]
    for inv in list(store.invitations.values()):
        if inv.vfolder_id.replace("-", "") == f.id:
            del store.invitations[inv.id]
    store.save()
    return web.Response(status=204)


def _has_trash_bin(app: web.Application) -> bool:
    """Managers before 24.03 (API v8.20240315) delete at once; later ones use a trash bin."""
    cfg = app.get(CONFIG)
    return cfg is None or cfg.features.has("folder_trash_bin")


async def delete_by_name(request: web.Request) -> web.Response:
    f = _owned(request, request.match_info["name"], trashed=False)
    if not _has_trash_bin(request.app):
        return await _purge(request, f)
    return _trash(request, f)


async def delete_by_id(request: web.Request) -> web.Response:
    params = await _params(request)
    return _trash(request, _owned(request, params.get("id") or params.get("vfolder_id"),
                                  trashed=False))


async def delete_from_trash(request: web.Request) -> web.Response:
    params = await _params(request)
    f = _owned(request, params.get("id") or params.get("vfolder_id"), trashed=True)
    return await _purge(request, f)


async def purge(request: web.Request) -> web.Response:
    params = await _params(request)
    f = _owned(request, params.get("id") or params.get("vfolder_id"), trashed=True)
    return await _purge(request, f)


async def force_delete(request: web.Request) -> web.Response:
    return await _purge(request, _owned(request, request.match_info["folder_id"], trashed=None))


async def restore(request: web.Request) -> web.Response:
    params = await _params(request)
    f = _owned(request, params.get("id") or params.get("vfolder_id"), trashed=True)
    f.status = "ready"
    _store(request).save()
    return web.Response(status=204)


async def rename_folder(request: web.Request) -> web.Response:
    ak, _, _ = _whoami(request)
    f = _owned(request, request.match_info["name"], trashed=False)
    params = await _params(request)
    new_name = params.get("new_name")
    if not isinstance(new_name, str) or not new_name or "/" in new_name or new_name in (".", ".."):
        raise invalid_api_params("new_name is required")
    store = _store(request)
    if any(g.name == new_name and g.owner == ak and g.id != f.id for g in store.folders.values()):
        raise Problem(
            400, "vfolder-invalid-parameter", "Invalid parameter for virtual folder operation.",
            "One of your accessible vfolders already has the name you requested.",
        )
    f.name = new_name
    store.save()
    return _ok()


async def update_options(request: web.Request) -> web.Response:
    f = _owned(request, request.match_info["name"], trashed=False)
    params = await _params(request)
    if "permission" in params and params["permission"] is not None:
        if params["permission"] not in _FOLDER_PERMS:
            raise invalid_api_params("invalid permission")
        f.permission = params["permission"]
    if "cloneable" in params and params["cloneable"] is not None:
        f.cloneable = _flag(params["cloneable"])
    _store(request).save()
    return _ok()

