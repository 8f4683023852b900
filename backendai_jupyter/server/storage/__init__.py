"""Virtual folders (``/folders``, protocol.md §6) and the storage-proxy transfer endpoints.

The package splits by responsibility: :mod:`.store` (registry, metadata, path confinement),
:mod:`.context` (request helpers), :mod:`.crud` (folder routes), :mod:`.files` (file operations),
:mod:`.sharing` (invitations), :mod:`.storage_proxy` (tokens, tus upload, token download),
:mod:`.v5` (20.03 multipart transfers) and :mod:`.mounts` (session mounts). This module only
re-exports what the rest of the server and the tests import; the routes are rows of the
server's one route table (``server/manager/routes.py``).
"""

from __future__ import annotations

from .mounts import mount_paths
from .storage_proxy import STORAGE_PREFIX
from .store import DEFAULT_HOST, FOLDER_STORE, FolderStore

__all__ = [
    "DEFAULT_HOST",
    "FOLDER_STORE",
    "STORAGE_PREFIX",
    "FolderStore",
    "mount_paths",
]
