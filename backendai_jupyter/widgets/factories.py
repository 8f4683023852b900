"""The public factory functions (re-exported by the package)."""

from __future__ import annotations

from ..client import Client
from .folders import FolderBrowser
from .resources import ResourcePicker
from .sessions import SessionDashboard

__all__ = ["folder_browser", "resource_picker", "session_dashboard"]


def resource_picker(client: Client | None = None, *, image: str | None = None) -> ResourcePicker:
    """An image and resource picker bounded by what is allocatable now."""
    return ResourcePicker(client, image=image)


def folder_browser(client: Client | None = None, *, folder: str | None = None) -> FolderBrowser:
    """A virtual folder browser with uploads, downloads and progress bars."""
    return FolderBrowser(client, folder=folder)


def session_dashboard(client: Client | None = None) -> SessionDashboard:
    """A list of your sessions with status, terminate and logs."""
    return SessionDashboard(client)
