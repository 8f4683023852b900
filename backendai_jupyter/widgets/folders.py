"""The vfolder browser: folders, files, create/delete/mkdir, uploads and downloads with progress."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ipywidgets as w

from ..client import Client, FolderInfo
from ..workspace.loop import BackgroundLoop
from ._base import Progress, WidgetBase, on_click
from ._data import entry_label, format_bytes, remote_join, sort_entries

__all__ = ["BROWSER_UPLOAD_LIMIT", "FolderBrowser"]

# A FileUpload sends the whole file in one comm message, which the Jupyter server's websocket caps
# at about 10 MB by default (ipywidgets#2522): bigger files go through "upload from path".
BROWSER_UPLOAD_LIMIT = 10 * 10**6


def _field(description: str, placeholder: str = "", width: str = "300px") -> w.Text:
    return w.Text(
        description=description,
        placeholder=placeholder,
        style={"description_width": "90px"},
        layout=w.Layout(width=width),
    )


class FolderBrowser(WidgetBase):
    """Browse virtual folders; create, delete, mkdir; upload and download with progress bars.

    Small files come from the browser through the "Upload" button (``FileUpload``, up to about
    10 MB); large files are streamed in chunks from a path on the Jupyter machine ("upload
    path"). Downloads land in a directory on the Jupyter machine (default: the kernel's cwd).
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        loop: BackgroundLoop | None = None,
        folder: str | None = None,
    ) -> None:
        super().__init__(client, loop)
        self.folders: list[FolderInfo] = []
        self.entries: list[Mapping[str, Any]] = []
        self.path = ""
        self._wanted = folder
        self._confirm_delete: str | None = None
        self._quiet_folder = False
        self.folder = w.Dropdown(
            description="folder", options=[], style={"description_width": "90px"}
        )
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.new_folder = _field("new folder", "name", "260px")
        self.create_button = w.Button(description="Create folder", icon="plus")
        self.delete_folder_button = w.Button(description="Delete folder", icon="trash")
        self.path_html = w.HTML()
        self.up_button = w.Button(description="Up", icon="arrow-up", layout=w.Layout(width="80px"))
        self.files = w.Select(options=[], rows=10, layout=w.Layout(width="600px"))
        self.open_button = w.Button(description="Open", icon="folder-open")
        self.delete_button = w.Button(description="Delete", icon="trash")
        self.download_button = w.Button(description="Download", icon="download")
        self.download_dir = _field("to dir", "the kernel's working directory")
        self.new_dir = _field("new dir", "name", "260px")
        self.mkdir_button = w.Button(description="mkdir", icon="folder")
        self.uploader = w.FileUpload(multiple=True, description="Upload")
        self.local_path = _field("local path", "/path/on/the/jupyter/machine", "420px")
        self.upload_path_button = w.Button(description="Upload path", icon="upload")
        self.transfers = w.VBox([])
        self._wire_actions()
        self.widget = self._layout()
        self.widget.add_class("bai-folder-browser")
        self.files.add_class("bai-files")
        self.refresh()

    def _wire_actions(self) -> None:
        """Each button to its action; choosing a folder or files to upload acts at once."""
        for button, action in (
            (self.refresh_button, self.refresh),
            (self.create_button, self._create_clicked),
            (self.delete_folder_button, self._delete_folder_clicked),
            (self.up_button, self.up),
            (self.open_button, self._open_clicked),
            (self.delete_button, self._delete_clicked),
            (self.download_button, self._download_clicked),
            (self.mkdir_button, self._mkdir_clicked),
            (self.upload_path_button, self._upload_path_clicked),
        ):
            on_click(button, action)
        self.folder.observe(self._folder_chosen, names="value")
        self.uploader.observe(self._files_chosen, names="value")

    def _layout(self) -> w.VBox:
        """The browser's rows, top to bottom."""
        return w.VBox(
            [
                w.HTML("<b>Backend.AI folders</b>"),
                w.HBox([self.folder, self.refresh_button, self.delete_folder_button]),
                w.HBox([self.new_folder, self.create_button]),
                w.HBox([self.up_button, self.path_html]),
                self.files,
                w.HBox([self.open_button, self.delete_button, self.download_button]),
                self.download_dir,
                w.HBox([self.new_dir, self.mkdir_button]),
                w.HBox([self.uploader, w.HTML("<small>from this browser, up to ~10 MB</small>")]),
                w.HBox([self.local_path, self.upload_path_button]),
                self.transfers,
                self.status,
            ]
        )

    # -- state -----------------------------------------------------------------------------------

    @property
    def current(self) -> str | None:
        """The selected folder's name."""
        value = self.folder.value
        return str(value) if value else None

    @property
    def selected(self) -> Mapping[str, Any] | None:
        """The selected listing entry (``{name, type, size, ...}``)."""
        name = self.files.value
        return next((e for e in self.entries if e.get("name") == name), None)

    def _need_folder(self) -> str:
        if self.current is None:
            raise ValueError("no folder selected")
        return self.current

    # -- listing ---------------------------------------------------------------------------------

    def refresh(self) -> concurrent.futures.Future[None]:
        """Re-read the folder list and the current directory."""
        return self._submit(self._reload(), "loading folders…")

    async def _reload(self, select: str | None = None) -> None:
        client = await self.client()
        self.folders = sorted(await client.folders.list(), key=lambda f: f.name)
        names = [f.name for f in self.folders]
        wanted = select or self.current or self._wanted
        self._quiet_folder = True
        try:
            self.folder.options = names
            self.folder.value = wanted if wanted in names else (names[0] if names else None)
        finally:
            self._quiet_folder = False
        if self.current is None:
            self.path = ""
            self._show_entries([])
            self._info("no folders yet: create one")
            return
        await self._list()

    async def _list(self) -> None:
        folder = self._need_folder()
        client = await self.client()
        try:
            entries = await client.folders.list_files(folder, self.path)
        except Exception:
            if not self.path:
                raise
            self.path = ""  # the directory went away: back to the root
            entries = await client.folders.list_files(folder, "")
        self._show_entries(entries)
        self._info(f"{len(entries)} item(s)")

    def _show_entries(self, entries: list[dict[str, Any]] | list[Mapping[str, Any]]) -> None:
        self.entries = sort_entries(entries)
        self.files.options = [(entry_label(e), str(e.get("name"))) for e in self.entries]
        where = f"{self.current}:/{self.path}" if self.current else "—"
        self.path_html.value = f"<code>{where}</code>"

    def _folder_chosen(self, change: dict[str, Any]) -> None:
        if self._quiet_folder or change["new"] is None:
            return
        self.path = ""
        self._confirm_delete = None
        self.delete_folder_button.description = "Delete folder"
        self._submit(self._list(), f"listing {change['new']}…")

    def open(self, name: str | None = None) -> concurrent.futures.Future[None]:
        """Enter a directory (default: the selected entry)."""
        entry = self.selected if name is None else {"name": name, "type": "directory"}
        if entry is None or entry.get("type") != "directory":
            raise ValueError("select a directory to open")
        self.path = remote_join(self.path, str(entry["name"]))
        return self._submit(self._list(), f"listing /{self.path}…")

    def up(self) -> concurrent.futures.Future[None]:
        """Go to the parent directory."""
        self.path = "/".join(self.path.split("/")[:-1]) if "/" in self.path else ""
        return self._submit(self._list(), f"listing /{self.path}…")

    # -- folder and file operations --------------------------------------------------------------

    def create_folder(self, name: str) -> concurrent.futures.Future[None]:
        """Create a folder (on the default storage host) and select it."""

        async def create() -> None:
            client = await self.client()
            await client.folders.create(name)
            await self._reload(select=name)
            self._info(f"created folder {name}")

        return self._submit(create(), f"creating folder {name}…")

    def delete_folder(self, name: str | None = None) -> concurrent.futures.Future[None]:
        """Delete a folder (into the trash bin on managers that have one)."""
        target = name or self._need_folder()

        async def delete() -> None:
            client = await self.client()
            await client.folders.delete(target)
            if self.current == target:
                self.folder.value = None
            await self._reload()
            self._info(f"deleted folder {target}")

        return self._submit(delete(), f"deleting folder {target}…")

    def mkdir(self, name: str) -> concurrent.futures.Future[None]:
        """Create a directory inside the current directory."""
        folder, path = self._need_folder(), remote_join(self.path, name)

        async def make() -> None:
            client = await self.client()
            await client.folders.mkdir(folder, path, parents=True, exist_ok=True)
            await self._list()
            self._info(f"created /{path}")

        return self._submit(make(), f"creating /{path}…")

    def delete(self, name: str | None = None) -> concurrent.futures.Future[None]:
        """Delete a file or directory (recursively) in the current directory."""
        entry = self.selected if name is None else {"name": name}
        if entry is None:
            raise ValueError("select a file or directory to delete")
        folder, path = self._need_folder(), remote_join(self.path, str(entry["name"]))

        async def delete() -> None:
            client = await self.client()
            await client.folders.delete_files(folder, [path], recursive=True)
            await self._list()
            self._info(f"deleted /{path}")

        return self._submit(delete(), f"deleting /{path}…")

    # -- transfers -------------------------------------------------------------------------------

    def _progress(self, title: str) -> Progress:
        row = Progress(title)
        self.transfers.children = [*self.transfers.children[-4:], row.widget]
        return row

    def upload_path(
        self, local_path: str | Path, remote: str | None = None
    ) -> concurrent.futures.Future[None]:
        """Stream a file or directory from the Jupyter machine into the current directory."""
        folder = self._need_folder()
        source = Path(local_path).expanduser()
        target = remote_join(self.path, remote or source.name)
        row = self._progress(f"upload {source.name}")

        async def upload() -> None:
            client = await self.client()
            try:
                await client.folders.upload(folder, source, target, progress=row.update)
            except BaseException:
                row.finish(ok=False)
                raise
            row.finish()
            await self._list()
            self._info(f"uploaded {source.name} ({format_bytes(row.total)}) to /{target}")

        return self._submit(upload(), f"uploading {source}…")

    def upload_bytes(self, name: str, content: bytes) -> concurrent.futures.Future[None]:
        """Upload in-memory content (what ``FileUpload`` delivers) as ``name``."""
        folder = self._need_folder()
        target = remote_join(self.path, Path(name).name)
        row = self._progress(f"upload {Path(name).name}")

        async def upload() -> None:
            client = await self.client()
            tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="bai-upload-"))
            try:
                staged = tmp / Path(name).name
                await asyncio.to_thread(staged.write_bytes, content)
                await client.folders.upload(folder, staged, target, progress=row.update)
            except BaseException:
                row.finish(ok=False)
                raise
            finally:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
            row.finish()
            await self._list()
            self._info(f"uploaded {name} ({format_bytes(len(content))}) to /{target}")

        return self._submit(upload(), f"uploading {name}…")

    def download(
        self, name: str | None = None, to: str | Path | None = None
    ) -> concurrent.futures.Future[Path]:
        """Download a file or directory of the current directory to ``to`` (default: cwd)."""
        entry = self.selected if name is None else {"name": name}
        if entry is None:
            raise ValueError("select a file or directory to download")
        folder, path = self._need_folder(), remote_join(self.path, str(entry["name"]))
        dest = Path(to or self.download_dir.value.strip() or ".").expanduser()
        row = self._progress(f"download {entry['name']}")

        async def download() -> Path:
            client = await self.client()
            await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
            try:
                written = await client.folders.download(folder, path, dest, progress=row.update)
            except BaseException:
                row.finish(ok=False)
                raise
            row.finish()
            self._info(f"downloaded /{path} to {written}")
            return written

        return self._submit(download(), f"downloading /{path}…")

    # -- button handlers (errors go to the status line, never to a cell) -------------------------

    def _guard(self, action: Any) -> None:
        try:
            action()
        except Exception as e:
            self._error(str(e))

    def _create_clicked(self) -> None:
        name = self.new_folder.value.strip()
        if not name:
            self._error("type a folder name first")
            return
        self.new_folder.value = ""
        self.create_folder(name)

    def _delete_folder_clicked(self) -> None:
        current = self.current
        if current is None:
            self._error("no folder selected")
        elif self._confirm_delete != current:
            # Two clicks: the first one only asks.
            self._confirm_delete = current
            self.delete_folder_button.description = f"Really delete {current}?"
            self.delete_folder_button.button_style = "danger"
        else:
            self._confirm_delete = None
            self.delete_folder_button.description = "Delete folder"
            self.delete_folder_button.button_style = ""
            self.delete_folder(current)

    def _open_clicked(self) -> None:
        self._guard(self.open)

    def _delete_clicked(self) -> None:
        self._guard(self.delete)

    def _download_clicked(self) -> None:
        self._guard(self.download)

    def _mkdir_clicked(self) -> None:
        name = self.new_dir.value.strip()
        if not name:
            self._error("type a directory name first")
            return
        self.new_dir.value = ""
        self._guard(lambda: self.mkdir(name))

    def _upload_path_clicked(self) -> None:
        text = self.local_path.value.strip()
        if not text:
            self._error("type a path on the Jupyter machine first")
            return
        if not Path(text).expanduser().exists():
            self._error(f"no such file or directory on the Jupyter machine: {text}")
            return
        self._guard(lambda: self.upload_path(text))

    def _files_chosen(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        for item in files:
            # ipywidgets 8: {"name", "type", "size", "last_modified", "content": memoryview}.
            content = bytes(item["content"])
            self._guard(lambda n=str(item["name"]), c=content: self.upload_bytes(n, c))
        self.uploader.value = ()  # release the bytes (and allow choosing the same file again)
