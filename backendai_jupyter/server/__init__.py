"""The embedded local Backend.AI endpoint (``backendai-jupyter serve``)."""

from .app import create_app
from .state import ServerConfig

__all__ = ["ServerConfig", "create_app"]
