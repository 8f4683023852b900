"""``%backendai download``: files from a session's ``/home/work``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..grammar import MagicParser

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(p: MagicParser) -> None:
    p.add_argument("session")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--dest", default=".", metavar="DIR", help="local directory (default: .)")


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> None:
    paths = ctx.call(ctx.client.sessions.download(args.session, args.files, args.dest))
    for path in paths:
        ctx.status(f"✓ Downloaded {path}")
