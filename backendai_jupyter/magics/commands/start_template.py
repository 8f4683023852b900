"""``%backendai start-template``: start a session from a session template."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..grammar import MagicParser

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(p: MagicParser) -> None:
    p.add_argument("template_id")
    p.add_argument("-t", "--name", help="session name")
    p.add_argument("--enqueue-only", action="store_true")
    p.add_argument("--max-wait", type=int, default=0, metavar="SECONDS")
    p.add_argument("-d", "--domain")
    p.add_argument("-g", "--group")


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> None:
    info = ctx.call(ctx.client.sessions.create_from_template(
        args.template_id, name=args.name, enqueueOnly=args.enqueue_only or None,
        maxWaitSeconds=args.max_wait or None, domain=args.domain, group=args.group,
    ))
    ctx.status(f"✓ Session {info.name} ({info.id}) started from template "
               f"{args.template_id} (status {info.status or 'unknown'}).")
