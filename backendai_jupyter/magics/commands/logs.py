"""``%backendai logs``: a session's container logs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..grammar import MagicParser

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(p: MagicParser) -> None:
    p.add_argument("session")


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> None:
    print(ctx.call(ctx.client.sessions.logs(args.session)), end="")
