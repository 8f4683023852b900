"""Virtual folders (``client.folders``): everything under ``/folders`` plus file transfers.

Transfers go through the storage proxy on v6+ managers (``request-upload`` → tus 1.0.0
``HEAD``/``PATCH``; ``request-download`` → plain ``GET`` with ``Range`` resume), and through the
manager itself on v5 (multipart ``upload`` / ``multipart/mixed`` ``download``).

On v8+ managers (24.03+) a folder name is first resolved to its UUID with ``GET /folders/_/id``,
as the official 26.x client does: a bare name in a path only resolves within the caller's
personal project, while the UUID reaches project folders too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exceptions import ProtocolError
from ._fileio import WRITE_BATCH
from ._folder_wire import (
    _V_2203,
    _V_ID_PATHS,
    _V_TRASH,
    _is_uuid,
    normalize_file_entry,
    normalize_listing,
)
from ._models import FolderInfo
from .transfers import DEFAULT_CHUNK_SIZE, Progress, Transfers

if TYPE_CHECKING:
    from ._core import ClientCore
    from ._http import HTTPTransport

__all__ = ["DEFAULT_CHUNK_SIZE", "Folders", "Progress", "normalize_file_entry", "normalize_listing"]

_List = list  # ``list`` is shadowed by :meth:`Folders.list` inside the class body


class Folders:
    """``client.folders``: virtual folder management and transfers."""

    def __init__(self, client: ClientCore) -> None:
        self._client = client
        self._transfers = Transfers(self, client)

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def _http(self) -> HTTPTransport:
        return self._client.http

    def _at_least(self, version: tuple[int, str]) -> bool:
        return self._client.features.version >= version

    async def _key(self, name: str) -> str:
        """The path segment for a folder: its UUID from 24.09 on (as the 26.x SDK), else the
        name (24.03 and older resolve ``/folders/{x}`` by name only)."""
        await self._client.connect()
        if self._at_least(_V_ID_PATHS):
            return name if _is_uuid(name) else await self.get_id(name)
        if not _is_uuid(name):
            return name
        wanted = name.replace("-", "").lower()
        for folder in await self.list():
            if folder.id.replace("-", "").lower() == wanted:
                return folder.name
        return name  # the server's 404 then names it

    async def get_id(self, name: str) -> str:
        """The folder's UUID (v8+ managers: ``GET /folders/_/id``; older: from the info call)."""
        await self._client.connect()
        if _is_uuid(name):
            return name
        if self._at_least(_V_TRASH):
            data = await self._http.json("GET", "/folders/_/id", json={"name": name})
        else:
            data = await self._http.json("GET", f"/folders/{name}")
        if not isinstance(data, dict) or not data.get("id"):
            raise ProtocolError(f"folder {name!r}: no id in {str(data)[:80]!r}")
        return str(data["id"])

    # -- folders ---------------------------------------------------------------------------------

    async def list(self, all: bool = False, group_id: str | None = None) -> _List[FolderInfo]:
        await self._client.connect()
        data = await self._http.json(
            "GET", "/folders", params={"all": all, "group_id": group_id}
        )
        if not isinstance(data, _List):
            raise ProtocolError(f"GET /folders: expected a list, got {str(data)[:80]!r}")
        return [FolderInfo.from_json(d) for d in data if isinstance(d, dict)]

    async def list_hosts(self) -> dict[str, Any]:
        await self._client.connect()
        data = await self._http.json("GET", "/folders/_/hosts")
        return data if isinstance(data, dict) else {"default": None, "allowed": data}

    async def create(
        self,
        name: str,
        host: str | None = None,
        *,
        group: str | None = None,
        usage_mode: str = "general",
        permission: str = "rw",
        cloneable: bool = False,
    ) -> FolderInfo:
        """Create a folder. ``group`` must be a project UUID on 26.x managers."""
        await self._client.connect()
        body: dict[str, Any] = {
            "name": name,
            "host": host,
            "usage_mode": usage_mode,
            "permission": permission,
            "group": group,
        }
        if cloneable or self._at_least(_V_2203):
            body["cloneable"] = cloneable
        data = await self._http.json("POST", "/folders", json=body)
        if not isinstance(data, dict):
            raise ProtocolError(f"POST /folders: unexpected answer {str(data)[:80]!r}")
        return FolderInfo.from_json(data)

    async def info(self, name: str) -> FolderInfo:
        key = await self._key(name)
        data = await self._http.json("GET", f"/folders/{key}")
        if not isinstance(data, dict):
            raise ProtocolError(f"GET /folders/{key}: unexpected answer {str(data)[:80]!r}")
        return FolderInfo.from_json(data)

    async def delete(self, name: str, *, forever: bool = False) -> None:
        """Delete a folder: into the trash bin on v8+ (the name stays taken until it is emptied).

        ``forever=True`` then empties it from the trash (``delete-from-trash-bin``), freeing the
        name; this is what a user (non-admin) can do. Older managers delete immediately.
        """
        await self._client.connect()
        if not self._at_least(_V_TRASH):
            await self._http.request("DELETE", f"/folders/{name}")
            return
        folder_id = await self.get_id(name)
        # What the 26.9.6 CLI ``vfolder delete`` sends.
        await self._http.request("DELETE", "/folders", json={"id": folder_id})
        if forever:
            await self.delete_forever(folder_id)

    async def delete_forever(self, folder_id: str) -> None:
        """Permanently delete a folder that is in the trash (v8+; takes the UUID)."""
        await self._client.connect()
        await self._http.request("POST", "/folders/delete-from-trash-bin", json={"id": folder_id})

    async def restore(self, folder_id: str) -> None:
        """Take a folder out of the trash bin (v8+; takes the UUID)."""
        await self._client.connect()
        await self._http.request("POST", "/folders/restore-from-trash-bin", json={"id": folder_id})

    async def purge(self, folder_id: str) -> None:
        """Purge a folder's record (v8+; admins only on 26.x; takes the UUID)."""
        await self._client.connect()
        await self._http.request("POST", "/folders/purge", json={"id": folder_id})

    async def rename(self, name: str, new_name: str) -> None:
        key = await self._key(name)
        await self._http.request("POST", f"/folders/{key}/rename", json={"new_name": new_name})

    async def mkdir(
        self, name: str, path: str | Sequence[str], parents: bool = False, exist_ok: bool = False
    ) -> Any:
        key = await self._key(name)
        body: dict[str, Any] = {"path": path if isinstance(path, str) else _List(path)}
        if parents or exist_ok or self._at_least(_V_2203):
            body["parents"] = parents
            body["exist_ok"] = exist_ok
        return await self._http.json("POST", f"/folders/{key}/mkdir", json=body)

    async def list_files(self, name: str, path: str = "") -> _List[dict[str, Any]]:
        """Entries of ``path`` as dicts with name/type/size/mode/created/modified."""
        key = await self._key(name)
        data = await self._http.json("GET", f"/folders/{key}/files", params={"path": path})
        return normalize_listing(data)

    def _route(self, new: str, old: str) -> str:
        return new if self._at_least(_V_2203) else old

    async def rename_file(self, name: str, target_path: str, new_name: str) -> None:
        key = await self._key(name)
        route = self._route("rename-file", "rename_file")
        await self._http.request(
            "POST",
            f"/folders/{key}/{route}",
            json={"target_path": target_path, "new_name": new_name},
        )

    async def move_file(self, name: str, src: str, dst: str) -> None:
        key = await self._key(name)
        await self._http.request(
            "POST", f"/folders/{key}/move-file", json={"src": src, "dst": dst}
        )

    async def delete_files(
        self, name: str, files: str | Iterable[str], recursive: bool = False
    ) -> None:
        key = await self._key(name)
        route = self._route("delete-files", "delete_files")
        names = [files] if isinstance(files, str) else [str(f) for f in files]
        await self._http.request(
            "DELETE", f"/folders/{key}/{route}", json={"files": names, "recursive": recursive}
        )

    # -- sharing ---------------------------------------------------------------------------------

    async def invite(self, name: str, emails: Sequence[str], perm: str = "rw") -> Any:
        key = await self._key(name)
        return await self._http.json(
            "POST", f"/folders/{key}/invite", json={"perm": perm, "user_ids": _List(emails)}
        )

    async def invitations(self) -> _List[dict[str, Any]]:
        await self._client.connect()
        data = await self._http.json("GET", "/folders/invitations/list")
        items = data.get("invitations", []) if isinstance(data, dict) else data
        return [d for d in (items or []) if isinstance(d, dict)]

    async def accept_invitation(self, inv_id: str) -> None:
        await self._client.connect()
        await self._http.request("POST", "/folders/invitations/accept", json={"inv_id": inv_id})

    async def delete_invitation(self, inv_id: str) -> None:
        await self._client.connect()
        await self._http.request("DELETE", "/folders/invitations/delete", json={"inv_id": inv_id})

    async def share(self, name: str, emails: Sequence[str], perm: str = "rw") -> Any:
        """Share a project folder with users (admins; 22.03+)."""
        key = await self._key(name)
        return await self._http.json(
            "POST", f"/folders/{key}/share", json={"permission": perm, "emails": _List(emails)}
        )

    async def unshare(self, name: str, emails: Sequence[str]) -> Any:
        key = await self._key(name)
        return await self._http.json(
            "DELETE", f"/folders/{key}/unshare", json={"emails": _List(emails)}
        )

    async def leave(self, name: str) -> None:
        """Leave a folder shared with (invited to) the caller (22.03+)."""
        key = await self._key(name)
        await self._http.request("POST", f"/folders/{key}/leave", json={})

    # -- transfers (in :mod:`.transfers`) ----------------------------------------------------------

    async def upload(
        self,
        name: str,
        local_path: Path | str,
        remote_path: str | None = None,
        *,
        progress: Progress | None = None,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    ) -> None:
        """Upload a file, or a directory recursively, to ``remote_path`` (default: its name).

        Files go with ``sendfile(2)`` over plain HTTP, so memory use stays small whatever the file
        size. ``chunk_size`` caps the bytes per tus PATCH (default: the whole file in one). A
        dropped connection during a tus upload is resumed from the offset the storage proxy
        reports.
        """
        await self._transfers.upload(
            name, local_path, remote_path, progress=progress, chunk_size=chunk_size
        )

    async def download(
        self,
        name: str,
        remote_path: str,
        local_path: Path | str | None = None,
        *,
        progress: Progress | None = None,
        chunk_size: int = WRITE_BATCH,
    ) -> Path:
        """Download a file or a directory (recursively); return the local path written.

        ``local_path`` defaults to the remote basename in the current directory; if it is an
        existing directory the remote basename is created inside it. Files are written to
        ``<target>.part`` and renamed when complete; an existing ``.part`` is resumed with a
        ``Range`` request. ``chunk_size`` is how many received bytes are gathered per file
        write (one write in flight while the next batch arrives; memory ≈ two of them).
        """
        return await self._transfers.download(
            name, remote_path, local_path, progress=progress, chunk_size=chunk_size
        )
