"""``%backendai kernel [status|stop]``: the Backend.AI kernel's own session
(``kernel config`` is ``config``, see :func:`~..grammar.normalize_argv`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..grammar import NESTED, MagicParser, add_subcommand

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(k: MagicParser) -> None:
    ks = k.add_subparsers(dest=NESTED, metavar="COMMAND")
    add_subcommand(ks, "status", "show the kernel session (default)")
    add_subcommand(ks, "stop",
                   "destroy the kernel session now; the next remote cell starts a new one")
    add_subcommand(ks, "config", "show the configuration (as %backendai config)")


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> None:
    ws = ctx.workspace
    session = ws.kernel_session
    if getattr(args, NESTED) == "stop":
        if ws.run(ws.stop_session()):
            ctx.status("✓ Kernel session stopped; the next remote cell starts a new one.")
        else:
            ctx.status("No kernel session is running.")
        return
    if session.active:
        mode = "rich" if session.rich else "plain"
        gpu = f", {session.allocation}" if session.allocation else ""
        print(f"session {session.session_name} ({session.session_id}), {mode} output{gpu}")
    else:
        print("no kernel session yet; the Backend.AI kernel starts one with its first remote cell")
