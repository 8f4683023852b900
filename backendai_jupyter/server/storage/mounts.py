"""Folder mounts for session creation: ``config.mounts`` + ``mount_map`` → host directories.

Called by ``sessions.py`` (not a route), so it lives apart from the HTTP handlers.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from aiohttp import web

from ..manager.errors import Problem, invalid_api_params, not_found
from ..manager.state import KEYPAIRS
from .store import FOLDER_STORE, Folder


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

