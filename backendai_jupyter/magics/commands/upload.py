"""``%backendai upload``: local files into a session's ``/home/work``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..grammar import MagicParser

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(p: MagicParser) -> None:
    p.add_argument("session")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--basedir", metavar="DIR", help="keep paths relative to DIR")


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> None:
    ctx.call(ctx.client.sessions.upload(args.session, args.files, basedir=args.basedir))
    ctx.status(f"✓ Uploaded {len(args.files)} file(s) to {args.session}.")
