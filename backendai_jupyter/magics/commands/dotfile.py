"""``%backendai dotfile ...``: dotfiles copied into every new session (content from ``--data``,
``-f FILE`` or the cell body)."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..grammar import NESTED, PROG, MagicParser, add_subcommand
from ..payload import add_payload_file, payload
from ..results import Table

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(d: MagicParser) -> None:
    ds = d.add_subparsers(dest=NESTED, metavar="COMMAND", required=True)
    for name, text in (("create", "create a dotfile"), ("update", "replace a dotfile")):
        p = add_subcommand(ds, name, f"{text} (--data, -f FILE or the cell body)")
        p.add_argument("path", help="path under /home/work, e.g. .bashrc")
        p.add_argument("--data", help="the content")
        add_payload_file(p)
        p.add_argument("-p", "--permission", default="644", help="octal mode (default 644)")
    add_subcommand(ds, "list", "list dotfiles")
    p = add_subcommand(ds, "get", "show a dotfile")
    p.add_argument("path")
    p = add_subcommand(ds, "delete", "delete a dotfile")
    p.add_argument("path")


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> Any:
    d = ctx.client.dotfiles
    cmd = getattr(args, NESTED)
    if cmd in ("create", "update") and not re.fullmatch(r"[0-7]{3}", args.permission):
        raise UsageError(f"{PROG} dotfile: --permission must be 3 octal digits, "
                         f"got {args.permission!r}")
    if cmd == "create":
        ctx.call(d.create(args.path, payload(args, cell, "content"), args.permission))
        ctx.status(f"✓ Dotfile {args.path} created.")
    elif cmd == "update":
        ctx.call(d.update(args.path, payload(args, cell, "content"), args.permission))
        ctx.status(f"✓ Dotfile {args.path} updated.")
    elif cmd == "list":
        return Table.from_records(ctx.call(d.list()), ("path", "permission", "data"))
    elif cmd == "get":
        print(ctx.call(d.get(args.path)).get("data", ""), end="")
    elif cmd == "delete":
        ctx.call(d.delete(args.path))
        ctx.status(f"✓ Dotfile {args.path} deleted.")
    return None
