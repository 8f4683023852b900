"""The embedded local Backend.AI endpoint (``backendai-jupyter serve``)."""

from .manager.app import create_app
from .manager.state import ServerConfig

__all__ = ["ServerConfig", "create_app"]
