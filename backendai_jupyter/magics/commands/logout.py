"""``%backendai logout``: end the login of a session-mode endpoint."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from IPython.core.error import UsageError

from ..grammar import PROG, MagicParser

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(p: MagicParser) -> None:
    """No flags."""


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> None:
    if ctx.client_config.endpoint_type != "session":
        raise UsageError(f"{PROG} logout: not in session mode (see %backendai login)")
    ctx.call(ctx.client.logout())
    ctx.status("✓ Logout done.")
