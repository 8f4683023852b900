"""The folder registry: records, invitations, pending uploads, and path confinement.

Folders live under ``<data_dir>/vfolders/<host>/<id hex>/``; their metadata (and invitations) in
``<data_dir>/vfolders.json``, rewritten atomically on every change. Every route module reads and
writes through :class:`FolderStore`, so it sits apart from the HTTP handlers; :func:`confine` is
here because every client-supplied path goes through it before touching the disk (absolute paths,
``..`` components and symlinks resolving outside answer 400).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from aiohttp import web

from ..manager.errors import Problem
from ..manager.state import CONFIG
from ..paths import path_problem

DEFAULT_HOST = "local:default"
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


# -- timestamps and path confinement -------------------------------------------------------------


def _now() -> str:
    return str(datetime.now(timezone.utc))  # "2026-11-26 22:33:55.102603+00:00", as the manager


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _clean_relpath(rel: Any, *, allow_root: bool = True) -> PurePosixPath:
    """Validate a client path: relative, no ``..``, no NUL. ``""``/``"."`` is the folder root."""
    problem = path_problem(rel)
    if problem is not None:
        raise _op_failed(f"invalid path: {problem}")
    if rel.startswith(("/", "\\")):
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
    #: Where the file goes (``dst_dir``), fixed by the token or by the upload's first request.
    dst_dir: str | None = None
    dst_bound: bool = False


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
