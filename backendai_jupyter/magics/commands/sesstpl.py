"""``%backendai sesstpl ...``: session templates (YAML/JSON from ``-f FILE`` or the cell body)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..grammar import NESTED, MagicParser, add_subcommand
from ..payload import add_payload_file, payload
from ..results import Table

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(t: MagicParser) -> None:
    ts = t.add_subparsers(dest=NESTED, metavar="COMMAND", required=True)
    p = add_subcommand(ts, "create", "create a template from YAML/JSON (-f FILE or the cell body)")
    add_payload_file(p)
    p.add_argument("-d", "--domain")
    p.add_argument("-g", "--group")
    p = add_subcommand(ts, "list", "list session templates")
    p.add_argument("-a", "--all", action="store_true", help="all users' templates (admins)")
    p = add_subcommand(ts, "get", "show a template")
    p.add_argument("template_id")
    p.add_argument("--format", default="yaml", choices=("yaml", "json"))
    p = add_subcommand(ts, "update", "replace a template (-f FILE or the cell body)")
    p.add_argument("template_id")
    add_payload_file(p)
    p = add_subcommand(ts, "delete", "delete a template")
    p.add_argument("template_id")


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> Any:
    t = ctx.client.templates
    cmd = getattr(args, NESTED)
    if cmd == "create":
        ids = ctx.call(t.create(payload(args, cell, "template"), group=args.group,
                                domain=args.domain))
        ctx.status(f"✓ Template created: {', '.join(ids)}")
        return ids[0] if len(ids) == 1 else ids
    if cmd == "list":
        items = ctx.call(t.list(all=args.all))
        cols = ("name", "id", "created_at", "is_owner", "user_email", "group_name", "type")
        present = [c for c in cols if any(c in i for i in items)] or ["name", "id"]
        return Table.from_records(items, present)
    if cmd == "get":
        print(ctx.call(t.get(args.template_id, format=args.format)))
    elif cmd == "update":
        ctx.call(t.update(args.template_id, payload(args, cell, "template")))
        ctx.status(f"✓ Template {args.template_id} updated.")
    elif cmd == "delete":
        ctx.call(t.delete(args.template_id))
        ctx.status(f"✓ Template {args.template_id} deleted.")
    return None
