"""What every ``/folders`` handler asks of a request: who calls, what they sent, which folder.

Shared by the CRUD, file, sharing and transfer routes (and ``userconfig``), so that the manager's
parameter rules (``check_api_params``) and permission checks are written once.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from ..manager import auth as _auth
from ..manager.errors import Problem, decode_json, invalid_api_params
from ..manager.state import KEYPAIRS
from .store import FOLDER_STORE, Folder, FolderStore


def _store(request: web.Request) -> FolderStore:
    store = request.app[FOLDER_STORE]
    store.load()
    return store


def _whoami(request: web.Request) -> tuple[str, str, str]:
    """``(access key, email, user uuid)`` of the authenticated caller."""
    # auth.py's middleware stores the key as ``request["access_key"]`` (or under an exported
    # ``auth.ACCESS_KEY`` request key); ``request["keypair"]["access_key"]`` is the fallback.
    value = request.get(getattr(_auth, "ACCESS_KEY", "access_key"))
    if value is None:
        keypair = request.get("keypair")
        value = keypair.get("access_key") if isinstance(keypair, dict) else None
    if not value:
        raise Problem(401, "auth-failed", "Credential/signature mismatch.", "Unauthorized access")
    ak = str(value)
    kp = request.app.get(KEYPAIRS, {}).get(ak)
    if kp is not None:
        return ak, kp.user_email, kp.user_id
    user = request.get("user") or {}
    email = str(user.get("email") or f"{ak.lower()}@localhost")
    uid = str(user.get("uuid") or uuid.uuid5(uuid.NAMESPACE_OID, ak))
    return ak, email, uid


async def _params(request: web.Request) -> dict[str, Any]:
    """The manager's ``check_api_params``: JSON body if present (even on GET), else the query."""
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        raw = await request.read()
        if raw.strip():
            try:
                body = decode_json(raw)
            except ValueError:
                raise invalid_api_params("Malformed body") from None
            if isinstance(body, dict):
                params.update(body)
    return params


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _ok() -> web.Response:
    return _json({"msg": ""})


async def _folder(request: web.Request, *, writable: bool = False) -> tuple[Folder, Path]:
    ak, email, _ = _whoami(request)
    store = _store(request)
    f = store.find(ak, email, request.match_info["name"])
    if writable and f.owner != ak:
        perm = store.shared_with(email).get(f.id, "ro")
        if perm == "ro":
            raise Problem(403, "generic-forbidden", "Forbidden operation.", "read-only folder")
    root = store.folder_dir(f)
    root.mkdir(parents=True, exist_ok=True)
    return f, root


def _owned(request: web.Request, key: Any, *, trashed: bool | None) -> Folder:
    ak, email, _ = _whoami(request)
    if not isinstance(key, str) or not key:
        raise invalid_api_params("id is required")
    f = _store(request).find(ak, email, key, trashed=trashed)
    if f.owner != ak:
        raise Problem(403, "generic-forbidden", "Forbidden operation.", "not the owner")
    return f


def _files_param(params: dict[str, Any]) -> list[Any]:
    """``files``: one path or a non-empty list of them (``delete-files``, v5 ``download``)."""
    files = params.get("files")
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not files:
        raise invalid_api_params("files is required")
    return files
