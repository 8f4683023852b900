"""Virtual folders (``/folders``, protocol.md §6) and the storage-proxy transfer endpoints.

Folders live under ``<data_dir>/vfolders/<host>/<id hex>/``; their metadata (and invitations) in
``<data_dir>/vfolders.json``, rewritten atomically on every change. Answers follow the 26.9.6
manager as observed on a real one (``{"msg": ""}`` for file operations, 204 for deletes, the trash
bin, UUID or name in paths).

Transfers (v6+): ``request-upload`` / ``request-download`` hand out an HMAC-signed, JWT-shaped
token and an absolute URL on this same server (``/storage-proxy/upload|download``). Uploads speak
tus 1.0.0 (``OPTIONS``/``HEAD``/``PATCH``/``DELETE``) into ``<host dir>/.staging/<session>.part``;
the file appears at its real path only when complete (one ``os.replace``). Downloads are
``FileResponse`` s (``Range``/``If-Range``), directories as a zip when ``archive`` is set.
v5 (``api_version`` ``v5.*``): multipart ``upload``, ``multipart/mixed`` ``download`` and
``download_single`` on the manager routes instead.

Every client-supplied path is confined to its folder: absolute paths, ``..`` components and
symlinks resolving outside answer 400.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import shutil
import stat as statmod
import tempfile
import time
import uuid
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import BodyPartReader, MultipartWriter, web

from ..client._fileio import BatchedFileWriter
from . import auth as _auth
from .errors import Problem, invalid_api_params, not_found
from .state import CONFIG, KEYPAIRS

__all__ = [
    "DEFAULT_HOST",
    "FOLDER_STORE",
    "STORAGE_PREFIX",
    "FolderStore",
    "mount_paths",
    "setup",
]

DEFAULT_HOST = "local:default"
STORAGE_PREFIX = "/storage-proxy"
TUS_MAX_SIZE = 1 << 40
_PIECE = 256 * 1024
_TOKEN_TTL = 24 * 3600
_META_FILE = "vfolders.json"
_SECRET_FILE = ".storage-secret"
_STAGING = ".staging"
_FOLDER_PERMS = ("ro", "rw", "wd")
_USAGE_MODES = ("general", "model", "data")


# -- errors ---------------------------------------------------------------------------------------


def _op_failed(msg: str) -> Problem:
    return Problem(
        400, "vfolder-operation-failed", "Virtual folder operation has failed due to bad request.",
        msg,
    )


def _no_folder(name: str) -> Problem:
    # 26.9.6: {"type": ".../object-not-found", "title": "No such virtual folder.", "data": name}
    return Problem(404, "object-not-found", "No such virtual folder.", data=name)


def _storage_error(status: int, slug: str, title: str, msg: str | None = None) -> Problem:
    return Problem(status, f"storage/{slug}", title, msg)


def _storage_bad(msg: str) -> Problem:
    return _storage_error(400, "invalid-api-params", "Invalid API parameters", msg)


# -- pure helpers ---------------------------------------------------------------------------------


def _now() -> str:
    return str(datetime.now(timezone.utc))  # "2026-11-26 22:33:55.102603+00:00", as the manager


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _clean_relpath(rel: Any, *, allow_root: bool = True) -> PurePosixPath:
    """Validate a client path: relative, no ``..``, no NUL. ``""``/``"."`` is the folder root."""
    if not isinstance(rel, str):
        raise _op_failed(f"invalid path: {rel!r}")
    if "\x00" in rel or rel.startswith(("/", "\\")):
        raise _op_failed(f"path must be relative to the folder: {rel!r}")
    pure = PurePosixPath(rel)
    if ".." in pure.parts:
        raise _op_failed(f"path escapes the folder: {rel!r}")
    if not allow_root and str(pure) in ("", "."):
        raise _op_failed("path must not be the folder root")
    return pure


def confine(root: Path, rel: Any, *, follow: bool = True, allow_root: bool = True) -> Path:
    """``root/rel`` after checking that it stays inside ``root`` (symlinks resolved).

    ``follow=False`` resolves only the parent, for operations on a link itself (delete, rename).
    """
    pure = _clean_relpath(rel, allow_root=allow_root)
    base = root.resolve()
    target = base.joinpath(*pure.parts)
    if follow:
        resolved = target.resolve()
    else:
        resolved = target.parent.resolve() / target.name if pure.parts else base
    if resolved != base and not resolved.is_relative_to(base):
        raise _op_failed(f"path escapes the folder: {rel!r}")
    return resolved


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


# -- metadata -------------------------------------------------------------------------------------


@dataclass
class Folder:
    id: str  # uuid hex, no dashes
    name: str
    host: str
    owner: str  # access key
    user: str  # owner user uuid
    creator: str  # owner email
    usage_mode: str = "general"
    permission: str = "rw"
    cloneable: bool = False
    group: str | None = None
    status: str = "ready"  # "delete-pending" while in the trash bin
    created_at: str = field(default_factory=_now)


@dataclass
class Invitation:
    id: str
    vfolder_id: str
    inviter: str  # email
    invitee: str  # email
    perm: str
    state: str = "pending"  # pending → accepted | rejected | canceled
    created_at: str = field(default_factory=_now)
    modified_at: str = field(default_factory=_now)


@dataclass
class Upload:
    session: str
    folder_id: str
    relpath: str
    size: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    done: bool = False


class FolderStore:
    """Folder records and invitations, persisted as JSON under the data directory."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loaded = False
        self.folders: dict[str, Folder] = {}
        self.invitations: dict[str, Invitation] = {}
        self.uploads: dict[str, Upload] = {}
        self._secret: bytes | None = None

    @property
    def data_dir(self) -> Path:
        return Path(self._app[CONFIG].data_dir)

    @property
    def meta_path(self) -> Path:
        return self.data_dir / _META_FILE

    def host_dir(self, host: str) -> Path:
        return self.data_dir / "vfolders" / host

    def folder_dir(self, folder: Folder) -> Path:
        return self.host_dir(folder.host) / folder.id

    def staging_dir(self, host: str) -> Path:
        path = self.host_dir(host) / _STAGING
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            path = self.data_dir / _SECRET_FILE
            if path.exists():
                self._secret = path.read_bytes()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                secret = os.urandom(32)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(secret)
                self._secret = secret
        return self._secret

    def load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not self.meta_path.exists():
            return
        raw = json.loads(self.meta_path.read_text())
        self.folders = {f["id"]: Folder(**f) for f in raw.get("folders", [])}
        self.invitations = {i["id"]: Invitation(**i) for i in raw.get("invitations", [])}

    def save(self) -> None:
        raw = {
            "folders": [asdict(f) for f in self.folders.values()],
            "invitations": [asdict(i) for i in self.invitations.values()],
        }
        self.meta_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.meta_path.with_name(self.meta_path.name + ".tmp")
        tmp.write_text(json.dumps(raw, indent=1))
        os.replace(tmp, self.meta_path)

    # -- lookups ---------------------------------------------------------------------------------

    def shared_with(self, email: str) -> dict[str, str]:
        """``{folder id: perm}`` for accepted invitations to ``email``."""
        return {
            i.vfolder_id.replace("-", ""): i.perm
            for i in self.invitations.values()
            if i.invitee == email and i.state == "accepted"
        }

    def accessible(self, ak: str, email: str, *, trashed: bool = False) -> list[Folder]:
        shared = self.shared_with(email)
        return [
            f
            for f in self.folders.values()
            if (f.owner == ak or f.id in shared) and ((f.status != "ready") == trashed)
        ]

    def find(self, ak: str, email: str, key: str, *, trashed: bool | None = False) -> Folder:
        """By UUID (hex or dashed, any status unless ``trashed`` says) or by name (own first)."""
        self.load()
        shared = self.shared_with(email)
        try:
            fid = uuid.UUID(key).hex
        except ValueError:
            fid = None
        if fid is not None:
            f = self.folders.get(fid)
            if f is not None and (f.owner == ak or f.id in shared):
                if trashed is None or (f.status != "ready") == trashed:
                    return f
            raise _no_folder(key)
        candidates = [
            f
            for f in self.folders.values()
            if f.name == key and (f.owner == ak or f.id in shared)
            and (trashed is None or (f.status != "ready") == trashed)
        ]
        candidates.sort(key=lambda f: (f.owner != ak, f.status != "ready"))
        if not candidates:
            raise _no_folder(key)
        return candidates[0]


FOLDER_STORE: web.AppKey[FolderStore] = web.AppKey("bjup_folder_store", FolderStore)


# -- request helpers ------------------------------------------------------------------------------


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
                body = json.loads(raw)
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


def _owned(request: web.Request, key: Any, *, trashed: bool | None) -> Folder:
    ak, email, _ = _whoami(request)
    if not isinstance(key, str) or not key:
        raise invalid_api_params("id is required")
    f = _store(request).find(ak, email, key, trashed=trashed)
    if f.owner != ak:
        raise Problem(403, "generic-forbidden", "Forbidden operation.", "not the owner")
    return f


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
    return cfg is None or str(cfg.api_version) >= "v8.20240315"


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


# -- file operations ------------------------------------------------------------------------------


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
    files = params.get("files")
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not files:
        raise invalid_api_params("files is required")
    await asyncio.to_thread(_delete, root, files, _flag(params.get("recursive")))
    return _ok()


# -- invitations ----------------------------------------------------------------------------------


def _inv_json(store: FolderStore, inv: Invitation) -> dict[str, Any]:
    f = store.folders.get(inv.vfolder_id.replace("-", ""))
    return {
        "id": inv.id,
        "inviter": inv.inviter,
        "invitee": inv.invitee,
        "perm": inv.perm,
        "state": inv.state,
        "created_at": inv.created_at,
        "modified_at": inv.modified_at,
        "vfolder_id": inv.vfolder_id,
        "vfolder_name": f.name if f else "",
    }


def _no_invitation() -> Problem:
    return Problem(404, "vfolder-invitation-not-found", "Virtual folder invitation not found.")


async def invite(request: web.Request) -> web.Response:
    ak, email, _ = _whoami(request)
    f = _owned(request, request.match_info["name"], trashed=False)
    params = await _params(request)
    perm = params.get("perm") or "rw"
    if perm not in _FOLDER_PERMS:
        raise invalid_api_params("perm must be one of ro, rw, wd")
    emails = params.get("user_ids") or params.get("emails") or params.get("userIDs") or []
    if not isinstance(emails, list) or not all(isinstance(e, str) and e for e in emails):
        raise invalid_api_params("user_ids must be a list of emails")
    if email in emails:
        raise invalid_api_params("You cannot invite yourself.")
    store = _store(request)
    invited = []
    for invitee in emails:
        existing = [
            i for i in store.invitations.values()
            if i.vfolder_id.replace("-", "") == f.id and i.invitee == invitee
            and i.state in ("pending", "accepted")
        ]
        if existing:
            continue
        inv = Invitation(
            id=str(uuid.uuid4()), vfolder_id=str(uuid.UUID(f.id)), inviter=email,
            invitee=invitee, perm=perm,
        )
        store.invitations[inv.id] = inv
        invited.append(invitee)
    store.save()
    return _json({"invited_ids": invited}, status=201)


async def list_invitations(request: web.Request) -> web.Response:
    _, email, _ = _whoami(request)
    store = _store(request)
    return _json({"invitations": [
        _inv_json(store, i) for i in store.invitations.values()
        if i.invitee == email and i.state == "pending"
    ]})


async def list_sent(request: web.Request) -> web.Response:
    _, email, _ = _whoami(request)
    store = _store(request)
    return _json({"invitations": [
        _inv_json(store, i) for i in store.invitations.values()
        if i.inviter == email and i.state == "pending"
    ]})


async def _invitation(request: web.Request, key: Any) -> Invitation:
    if not isinstance(key, str):
        raise invalid_api_params("inv_id is required")
    inv = _store(request).invitations.get(key)
    if inv is None:
        raise _no_invitation()
    return inv


async def accept_invitation(request: web.Request) -> web.Response:
    ak, email, _ = _whoami(request)
    params = await _params(request)
    inv = await _invitation(request, params.get("inv_id"))
    store = _store(request)
    if inv.invitee != email or inv.state != "pending":
        raise _no_invitation()
    f = store.folders.get(inv.vfolder_id.replace("-", ""))
    if f is None:
        raise _no_invitation()
    if any(g.name == f.name and g.owner == ak for g in store.folders.values()):
        raise Problem(
            400, "vfolder-already-exists",
            "The virtual folder already exists with the same name.",
            f"You already have a folder named {f.name!r}",
        )
    inv.state, inv.modified_at = "accepted", _now()
    store.save()
    return _ok()


async def delete_invitation(request: web.Request) -> web.Response:
    _, email, _ = _whoami(request)
    params = await _params(request)
    inv = await _invitation(request, params.get("inv_id"))
    if email not in (inv.inviter, inv.invitee) or inv.state != "pending":
        raise _no_invitation()
    store = _store(request)
    del store.invitations[inv.id]
    store.save()
    return _ok()


async def update_invitation(request: web.Request) -> web.Response:
    _, email, _ = _whoami(request)
    params = await _params(request)
    inv = await _invitation(request, request.match_info["inv_id"])
    if inv.inviter != email:
        raise _no_invitation()
    perm = params.get("perm")
    if perm not in _FOLDER_PERMS:
        raise invalid_api_params("perm must be one of ro, rw, wd")
    inv.perm, inv.modified_at = str(perm), _now()
    _store(request).save()
    return _ok()


async def share(request: web.Request) -> web.Response:
    _, email, _ = _whoami(request)
    f = _owned(request, request.match_info["name"], trashed=False)
    params = await _params(request)
    perm = params.get("permission") or "rw"
    emails = params.get("emails") or []
    if perm not in _FOLDER_PERMS or not isinstance(emails, list):
        raise invalid_api_params("permission and emails are required")
    store = _store(request)
    for invitee in emails:
        if invitee == email:
            continue
        inv = Invitation(
            id=str(uuid.uuid4()), vfolder_id=str(uuid.UUID(f.id)), inviter=email,
            invitee=str(invitee), perm=perm, state="accepted",
        )
        store.invitations[inv.id] = inv
    store.save()
    return _json({"shared_emails": emails}, status=201)


async def unshare(request: web.Request) -> web.Response:
    f = _owned(request, request.match_info["name"], trashed=False)
    params = await _params(request)
    emails = params.get("emails") or []
    store = _store(request)
    for inv in list(store.invitations.values()):
        if inv.vfolder_id.replace("-", "") == f.id and inv.invitee in emails:
            del store.invitations[inv.id]
    store.save()
    return _json({"unshared_emails": emails})


async def leave(request: web.Request) -> web.Response:
    ak, email, _ = _whoami(request)
    store = _store(request)
    f = store.find(ak, email, request.match_info["name"])
    if f.owner == ak:
        raise invalid_api_params("Cannot leave your own folder.")
    for inv in list(store.invitations.values()):
        if inv.vfolder_id.replace("-", "") == f.id and inv.invitee == email:
            del store.invitations[inv.id]
    store.save()
    return _json({"msg": "left the shared vfolder"})


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
    confine(root, rel, allow_root=False)
    store = _store(request)
    session = uuid.uuid4().hex
    store.uploads[session] = Upload(session, f.id, rel, size_int)
    token = sign_token(store.secret, {
        "op": "upload", "volume": f.host, "vfid": f.id, "relpath": rel, "size": size_int,
        "session": session, "exp": int(time.time()) + _TOKEN_TTL,
    })
    if size_int == 0:  # nothing to PATCH: the (empty) file exists right away
        await _finish_upload(store, store.uploads[session], root, request.query.get("dst_dir"))
    return _json({"token": token, "url": f"{_base_url(request)}/upload"})


async def request_download(request: web.Request) -> web.Response:
    f, root = await _folder(request)
    params = await _params(request)
    rel = params.get("path", params.get("file"))
    if not isinstance(rel, str):
        raise invalid_api_params("path is required")
    confine(root, rel)
    store = _store(request)
    token = sign_token(store.secret, {
        "op": "download", "volume": f.host, "vfid": f.id, "relpath": rel,
        "archive": _flag(params.get("archive")), "exp": int(time.time()) + _TOKEN_TTL,
    })
    return _json({"token": token, "url": f"{_base_url(request)}/download"})


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


def _upload_of(request: web.Request) -> tuple[FolderStore, Upload, Path, Path]:
    store = _store(request)
    token = request.query.get("token") or request.match_info.get("token", "")
    claims = verify_token(store.secret, token, "upload")
    f = store.folders.get(str(claims.get("vfid")))
    if f is None or f.status != "ready":
        raise _storage_error(404, "vfolder-not-found", "VFolder not found")
    session = str(claims["session"])
    up = store.uploads.get(session)
    if up is None:  # after a restart: the token still describes the upload
        up = Upload(session, f.id, str(claims["relpath"]), int(claims["size"]))
        store.uploads[session] = up
    part = store.staging_dir(f.host) / f"{session}.part"
    return store, up, part, store.folder_dir(f)


async def _finish_upload(
    store: FolderStore, up: Upload, root: Path, dst_dir: str | None, part: Path | None = None
) -> None:
    rel = str(PurePosixPath(dst_dir) / up.relpath) if dst_dir else up.relpath
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


@_auth.public
async def tus_options(request: web.Request) -> web.Response:
    return web.Response(status=200, headers=_tus_headers({
        "Tus-Version": "1.0.0",
        "Tus-Max-Size": str(TUS_MAX_SIZE),
        "Tus-Extension": "termination",
    }))


@_auth.public
async def tus_head(request: web.Request) -> web.Response:
    _, up, part, _ = _upload_of(request)
    offset = up.size if up.done else (part.stat().st_size if part.exists() else 0)
    return web.Response(status=200, headers=_tus_headers({
        "Upload-Offset": str(offset),
        "Upload-Length": str(up.size),
        "Cache-Control": "no-store",
    }))


@_auth.public
async def tus_patch(request: web.Request) -> web.Response:
    store, up, part, root = _upload_of(request)
    raw_offset = request.headers.get("Upload-Offset", "")
    if not raw_offset.isdigit():
        raise _storage_bad("Upload-Offset header is required")
    offset = int(raw_offset)
    async with up.lock:
        current = up.size if up.done else (part.stat().st_size if part.exists() else 0)
        if offset != current or up.done:
            raise _storage_error(
                409, "upload-offset-mismatch", "Upload Offset Mismatch",
                f"Upload offset mismatch: expected {current}, got {offset}",
            )
        written = current
        try:
            # The body's pieces as they arrived (no re-joining), written in batches of a few MiB
            # by one worker thread while the next batch arrives.
            writer = await BatchedFileWriter.open(part, append=True)
            try:
                received = current
                async for chunk, _ in request.content.iter_chunks():
                    if received + len(chunk) > up.size:
                        raise _storage_bad(
                            f"the upload exceeds its declared size ({up.size} bytes)"
                        )
                    received += len(chunk)
                    await writer.write(chunk)
            finally:
                await writer.close()
        finally:
            # A cut connection keeps what arrived: HEAD reports it and the client resumes there.
            written = part.stat().st_size if part.exists() else 0
            if written == up.size and not up.done and (part.exists() or up.size == 0):
                if not part.exists():
                    part.touch()
                await _finish_upload(store, up, root, request.query.get("dst_dir"), part)
    return web.Response(status=204, headers=_tus_headers({
        "Upload-Offset": str(written),
        "Upload-Length": str(up.size),
        "Cache-Control": "no-store",
    }))


@_auth.public
async def tus_delete(request: web.Request) -> web.Response:
    store, up, part, _ = _upload_of(request)
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


@_auth.public
async def download(request: web.Request) -> web.StreamResponse:
    store = _store(request)
    claims = verify_token(store.secret, request.query.get("token", ""), "download")
    f = store.folders.get(str(claims.get("vfid")))
    if f is None or f.status != "ready":
        raise Problem(404, "storage/file-not-found", "File not found")
    rel = str(claims.get("relpath", ""))
    if request.query.get("dst_dir"):
        rel = str(PurePosixPath(request.query["dst_dir"]) / rel)
    path = confine(store.folder_dir(f), rel)
    archive = _flag(claims.get("archive")) or _flag(request.query.get("archive"))
    return await _send_path(request, store, f.host, path, archive)


# -- v5 (20.03 manager) transfers -----------------------------------------------------------------


async def upload_v5(request: web.Request) -> web.Response:
    f, root = await _folder(request, writable=True)
    store = _store(request)
    reader = await request.multipart()
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
    files = params.get("files")
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not files:
        raise invalid_api_params("files is required")
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


# -- mounts for session creation ------------------------------------------------------------------


def mount_paths(
    app: web.Application,
    names: list[str],
    mount_map: dict[str, str],
    *,
    access_key: str | None = None,
) -> list[tuple[Path, str]]:
    """``[(host dir, path inside the session)]`` for ``config.mounts`` + ``config.mount_map``.

    Names may be folder names or UUIDs; with ``access_key`` only that keypair's folders (and those
    shared with it) are considered. Unknown names → 404 ``vfolder-not-found``.
    """
    store = app[FOLDER_STORE]
    store.load()
    email = ""
    if access_key is not None:
        kp = app.get(KEYPAIRS, {}).get(access_key)
        email = kp.user_email if kp is not None else ""
    for key in mount_map:
        if key not in names:
            raise invalid_api_params(f"mount_map names a folder that is not mounted: {key}")
    out: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for name in names:
        folder: Folder | None = None
        try:
            if access_key is not None:
                folder = store.find(access_key, email, name)
            else:
                fid = name.replace("-", "").lower()
                ready = [f for f in store.folders.values() if f.status == "ready"]
                folder = next((f for f in ready if f.id == fid), None) or next(
                    (f for f in ready if f.name == name), None
                )
        except Problem:
            folder = None
        if folder is None:
            raise not_found("vfolder", f"no such folder: {name}")
        dest = mount_map.get(name) or f"/home/work/{folder.name}"
        pure = PurePosixPath(dest if dest.startswith("/") else f"/home/work/{dest}")
        if ".." in pure.parts or str(pure) in ("/", "/home/work"):
            raise invalid_api_params(f"invalid mount path for {name}: {dest!r}")
        if str(pure) in seen:
            raise invalid_api_params(f"two folders mounted at {pure}")
        seen.add(str(pure))
        host_dir = store.folder_dir(folder)
        host_dir.mkdir(parents=True, exist_ok=True)
        out.append((host_dir, str(pure)))
    return out


# -- routes ---------------------------------------------------------------------------------------


def _is_v5(app: web.Application) -> bool:
    cfg = app.get(CONFIG)
    return cfg is not None and str(cfg.api_version).startswith("v5.")


def setup(app: web.Application) -> None:
    """Register every ``/folders`` route and the ``/storage-proxy`` transfer endpoints."""
    app[FOLDER_STORE] = FolderStore(app)
    r = app.router
    v5 = _is_v5(app)
    r.add_get("/folders/_/hosts", list_hosts)
    r.add_get("/folders/_/all_hosts", list_all_hosts)
    r.add_get("/folders/_/all-hosts", list_all_hosts)
    r.add_get("/folders/_/allowed_types", allowed_types)
    r.add_get("/folders/_/allowed-types", allowed_types)
    r.add_get("/folders/_/id", get_id)
    r.add_get("/folders/invitations/list", list_invitations)
    r.add_get("/folders/invitations/list_sent", list_sent)
    r.add_get("/folders/invitations/list-sent", list_sent)
    r.add_post("/folders/invitations/accept", accept_invitation)
    r.add_post("/folders/invitations/delete", delete_invitation)
    r.add_delete("/folders/invitations/delete", delete_invitation)
    r.add_post("/folders/invitations/update/{inv_id}", update_invitation)
    r.add_post("/folders/purge", purge)
    r.add_post("/folders/restore-from-trash-bin", restore)
    r.add_post("/folders/delete-from-trash-bin", delete_from_trash)
    r.add_post("/folders", create)
    r.add_get("/folders", list_folders)
    r.add_delete("/folders", delete_by_id)
    r.add_get("/folders/{name}", get_info)
    r.add_delete("/folders/{name}", delete_by_name)
    r.add_delete("/folders/{folder_id}/force", force_delete)
    r.add_post("/folders/{name}/rename", rename_folder)
    r.add_post("/folders/{name}/update-options", update_options)
    r.add_post("/folders/{name}/mkdir", mkdir)
    r.add_get("/folders/{name}/files", list_files)
    for route in ("rename-file", "rename_file"):
        r.add_post(f"/folders/{{name}}/{route}", rename_file)
    r.add_post("/folders/{name}/move-file", move_file)
    r.add_post("/folders/{name}/delete-files", delete_files)
    r.add_delete("/folders/{name}/delete-files", delete_files)
    r.add_delete("/folders/{name}/delete_files", delete_files)
    r.add_post("/folders/{name}/invite", invite)
    r.add_post("/folders/{name}/leave", leave)
    r.add_post("/folders/{name}/share", share)
    r.add_post("/folders/{name}/unshare", unshare)
    r.add_delete("/folders/{name}/unshare", unshare)
    if v5:
        r.add_post("/folders/{name}/upload", upload_v5)
        r.add_get("/folders/{name}/download", download_v5)
        r.add_get("/folders/{name}/download_single", download_single)
    else:
        r.add_post("/folders/{name}/request-upload", request_upload)
        r.add_post("/folders/{name}/request-download", request_download)
    # The storage proxy's client API, unauthenticated (the token is the credential).
    up = r.add_resource(f"{STORAGE_PREFIX}/upload")
    up.add_route("OPTIONS", tus_options)
    up.add_route("HEAD", tus_head)
    up.add_route("PATCH", tus_patch)
    up.add_route("DELETE", tus_delete)
    r.add_get(f"{STORAGE_PREFIX}/download", download)
