"""Folder mounts for session creation: ``config.mounts`` + ``mount_map`` → host directories.

Called by ``sessions.py`` (not a route), so it lives apart from the HTTP handlers.
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath

from aiohttp import web

from ..manager.errors import Problem, invalid_api_params, not_found
from ..manager.state import CONFIG, KEYPAIRS
from .store import FOLDER_STORE, Folder

#: Where a folder may not be mounted in a session: the system's own directories (or anything
#: below them), the sandbox's runtime directory, and — exactly — the roots of the session's view.
_RESERVED_TREES = ("/proc", "/sys", "/dev", "/etc", "/run", "/usr", "/bin", "/sbin", "/lib",
                   "/lib32", "/lib64", "/boot", "/var", "/home/config")
_RESERVED_EXACT = ("/", "/home", "/home/work", "/tmp", "/root", "/opt", "/srv", "/mnt")


def _related(a: PurePosixPath, b: PurePosixPath) -> bool:
    return a == b or a in b.parents or b in a.parents


def reserved_mount_problem(dest: PurePosixPath, data_dir: PurePosixPath,
                           interpreter: tuple[str, ...] = ()) -> str | None:
    """Why ``dest`` (absolute, normalized) cannot hold a folder, or None (pure)."""
    if str(dest) in _RESERVED_EXACT:
        return f"{dest} is reserved"
    for tree in map(PurePosixPath, _RESERVED_TREES):
        if dest == tree or tree in dest.parents:
            return f"{tree} is reserved"
    rel = dest.parts[3:] if dest.parts[:3] == ("/", "home", "work") else ()
    if rel and rel[0].startswith("."):
        return "/home/work/.* (the session's own configuration) is reserved"
    if _related(dest, data_dir):
        return "the endpoint's data directory is reserved"
    for prefix in interpreter:
        if _related(dest, PurePosixPath(prefix)):
            return "the interpreter's directories are reserved"
    return None


def _interpreter_dirs() -> tuple[str, ...]:
    return tuple({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix})


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
        why = reserved_mount_problem(pure, PurePosixPath(app[CONFIG].data_dir),
                                     _interpreter_dirs())
        if why is not None:
            raise invalid_api_params(f"invalid mount path for {name}: {why}")
        if str(pure) in seen:
            raise invalid_api_params(f"two folders mounted at {pure}")
        seen.add(str(pure))
        host_dir = store.folder_dir(folder)
        host_dir.mkdir(parents=True, exist_ok=True)
        out.append((host_dir, str(pure)))
    return out

