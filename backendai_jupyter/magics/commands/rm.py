"""``%backendai rm``: terminate sessions (every one is tried; the failures are one error)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ...client import BackendAIError
from ..errors import CommandError
from ..grammar import MagicParser

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(p: MagicParser) -> None:
    p.add_argument("sessions", nargs="+", metavar="SESSION", help="session names or ids")
    p.add_argument("-f", "--forced", action="store_true", help="force termination")


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> None:
    failed: list[str] = []
    for session in args.sessions:
        try:
            ctx.call(ctx.client.sessions.destroy(session, forced=args.forced))
            ctx.status(f"✓ Session {session} terminated.")
        except BackendAIError as e:
            failed.append(f"{session}: {e}")
    if failed:
        raise CommandError("; ".join(failed))
