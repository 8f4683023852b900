"""Virtual folders (``/folders``, protocol.md §6) and the storage-proxy transfer endpoints.

The package splits by responsibility: :mod:`.store` (registry, metadata, path confinement),
:mod:`.context` (request helpers), :mod:`.crud` (folder routes), :mod:`.files` (file operations),
:mod:`.sharing` (invitations), :mod:`.storage_proxy` (tokens, tus upload, token download),
:mod:`.v5` (20.03 multipart transfers) and :mod:`.mounts` (session mounts). This module only
wires the routes, and re-exports what the rest of the server and the tests import.
"""

from __future__ import annotations

from aiohttp import web

from ..state import CONFIG
from . import crud, files, sharing, storage_proxy, v5
from .mounts import mount_paths
from .storage_proxy import STORAGE_PREFIX
from .store import DEFAULT_HOST, FOLDER_STORE, FolderStore

__all__ = [
    "DEFAULT_HOST",
    "FOLDER_STORE",
    "STORAGE_PREFIX",
    "FolderStore",
    "mount_paths",
    "setup",
]


def _is_v5(app: web.Application) -> bool:
    cfg = app.get(CONFIG)
    return cfg is not None and str(cfg.api_version).startswith("v5.")


def setup(app: web.Application) -> None:
    """Register every ``/folders`` route and the ``/storage-proxy`` transfer endpoints."""
    app[FOLDER_STORE] = FolderStore(app)
    r = app.router
    r.add_get("/folders/_/hosts", crud.list_hosts)
    r.add_get("/folders/_/all_hosts", crud.list_all_hosts)
    r.add_get("/folders/_/all-hosts", crud.list_all_hosts)
    r.add_get("/folders/_/allowed_types", crud.allowed_types)
    r.add_get("/folders/_/allowed-types", crud.allowed_types)
    r.add_get("/folders/_/id", crud.get_id)
    r.add_get("/folders/invitations/list", sharing.list_invitations)
    r.add_get("/folders/invitations/list_sent", sharing.list_sent)
    r.add_get("/folders/invitations/list-sent", sharing.list_sent)
    r.add_post("/folders/invitations/accept", sharing.accept_invitation)
    r.add_post("/folders/invitations/delete", sharing.delete_invitation)
    r.add_delete("/folders/invitations/delete", sharing.delete_invitation)
    r.add_post("/folders/invitations/update/{inv_id}", sharing.update_invitation)
    r.add_post("/folders/purge", crud.purge)
    r.add_post("/folders/restore-from-trash-bin", crud.restore)
    r.add_post("/folders/delete-from-trash-bin", crud.delete_from_trash)
    r.add_post("/folders", crud.create)
    r.add_get("/folders", crud.list_folders)
    r.add_delete("/folders", crud.delete_by_id)
    r.add_get("/folders/{name}", crud.get_info)
    r.add_delete("/folders/{name}", crud.delete_by_name)
    r.add_delete("/folders/{folder_id}/force", crud.force_delete)
    r.add_post("/folders/{name}/rename", crud.rename_folder)
    r.add_post("/folders/{name}/update-options", crud.update_options)
    r.add_post("/folders/{name}/mkdir", files.mkdir)
    r.add_get("/folders/{name}/files", files.list_files)
    for route in ("rename-file", "rename_file"):
        r.add_post(f"/folders/{{name}}/{route}", files.rename_file)
    r.add_post("/folders/{name}/move-file", files.move_file)
    r.add_post("/folders/{name}/delete-files", files.delete_files)
    r.add_delete("/folders/{name}/delete-files", files.delete_files)
    r.add_delete("/folders/{name}/delete_files", files.delete_files)
    r.add_post("/folders/{name}/invite", sharing.invite)
    r.add_post("/folders/{name}/leave", sharing.leave)
    r.add_post("/folders/{name}/share", sharing.share)
    r.add_post("/folders/{name}/unshare", sharing.unshare)
    r.add_delete("/folders/{name}/unshare", sharing.unshare)
    if _is_v5(app):
        r.add_post("/folders/{name}/upload", v5.upload_v5)
        r.add_get("/folders/{name}/download", v5.download_v5)
        r.add_get("/folders/{name}/download_single", v5.download_single)
    else:
        r.add_post("/folders/{name}/request-upload", storage_proxy.request_upload)
        r.add_post("/folders/{name}/request-download", storage_proxy.request_download)
    # The storage proxy's client API, unauthenticated (the token is the credential).
    up = r.add_resource(f"{STORAGE_PREFIX}/upload")
    up.add_route("OPTIONS", storage_proxy.tus_options)
    up.add_route("HEAD", storage_proxy.tus_head)
    up.add_route("PATCH", storage_proxy.tus_patch)
    up.add_route("DELETE", storage_proxy.tus_delete)
    r.add_get(f"{STORAGE_PREFIX}/download", storage_proxy.download)
