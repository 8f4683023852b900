"""The ``%backendai`` commands: one module each, found through :data:`COMMANDS`.

A command module holds its grammar next to its body::

    def add_arguments(parser: MagicParser) -> None: ...      # its flags (and sub-commands)
    def run(ctx: Context, args: Namespace, cell: str | None) -> Any: ...

``run`` gets the magic's :class:`~..context.Context` (the workspace, the client, the status
line, live output) and returns what the magic returns. The modules are imported when the parser
is built; a dependency only one command needs (the jobs extra for ``nbrun``) is imported inside
its ``run``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..context import Context

__all__ = ["COMMANDS", "Command"]

#: name → (module in this package, one-line help), in the order ``%backendai --help`` lists
#: them.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run code in a compute session"),
    "nbrun": ("nbrun",
              "run a notebook or a parameter sweep of it (backendai-jupyter run)"),
    "start": ("start", "start a session (prints its service ports)"),
    "ps": ("ps", "list your sessions"),
    "rm": ("rm", "terminate sessions"),
    "events": ("events", "stream a session's lifecycle events"),
    "logs": ("logs", "show a session's container logs"),
    "upload": ("upload", "upload local files into a session's /home/work"),
    "download": ("download", "download files from a session's /home/work"),
    "vfolder": ("vfolder", "manage storage folders (vfolders)"),
    "sesstpl": ("sesstpl", "manage session templates"),
    "start-template": ("start_template", "start a session from a template"),
    "dotfile": ("dotfile", "manage dotfiles copied into every new session"),
    "app": ("app",
            "proxy a session's service (jupyter, ttyd, sshd, ...) to a local port"),
    "config": ("config",
               "show or change the configuration (never shows the secret key)"),
    "kernel": ("kernel", "the Backend.AI kernel's own session (status, stop)"),
    "login": ("login", "log in to a session-mode endpoint (password prompted)"),
    "logout": ("logout", "log out of a session-mode endpoint"),
    "doctor": ("doctor", "check what a first cell needs, with a fix for each"),
}


class Command(Protocol):
    """What a command module provides (see the module docstring)."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, ctx: Context, args: argparse.Namespace, cell: str | None) -> Any: ...
