"""``%backendai ps``: list sessions, with a chosen set of fields."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from IPython.core.error import UsageError

from ...client.capacity import describe_slots, parse_slot_map
from ...client.lifecycle import DEAD_STATUSES
from ..grammar import PROG, MagicParser
from ..results import Table

if TYPE_CHECKING:
    from ..context import Context

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_FIELDS = ("name", "id", "image", "type", "gpu", "status", "status_info",
                  "status_changed", "result")
DETAIL_FIELDS = (*DEFAULT_FIELDS, "tag", "created_at", "terminated_at", "occupied_slots")
ALIASES = {"last_updated": "status_changed", "session_id": "id"}
RUNNING = ("PREPARING", "PULLING", "RUNNING")


def add_arguments(p: MagicParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--running", action="store_true", help=", ".join(RUNNING))
    which.add_argument("--dead", action="store_true", help=", ".join(sorted(DEAD_STATUSES)))
    fields = p.add_mutually_exclusive_group()
    fields.add_argument("--id-only", action="store_true", help="only the session ids")
    fields.add_argument("--detail", action="store_true", help="more fields")
    fields.add_argument("-f", "--format", metavar="FIELDS", help="comma-separated field names")
    p.add_argument("--all", action="store_true", help="all sessions (default: the first 10)")
    p.add_argument("--access-key", help="another user's sessions (admins)")


def fields_of(args: argparse.Namespace) -> Sequence[str]:
    """The columns ``ps`` shows for these flags."""
    if args.id_only:
        return ("id",)
    if args.detail:
        return DETAIL_FIELDS
    if args.format is not None:
        names = [f.strip() for f in args.format.split(",") if f.strip()]
        if not names or not all(_FIELD.match(n) for n in names):
            raise UsageError(f"{PROG} ps: -f expects comma-separated field names, "
                             f"got {args.format!r}")
        return tuple(dict.fromkeys(ALIASES.get(n, n) for n in names))
    return DEFAULT_FIELDS


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> Table:
    fields = fields_of(args)
    status = RUNNING if args.running else tuple(sorted(DEAD_STATUSES)) if args.dead else None
    # "gpu" is not a server field: the accelerator part of occupied_slots, in words.
    asked = tuple(dict.fromkeys("occupied_slots" if f == "gpu" else f for f in fields))
    items = ctx.call(ctx.client.sessions.list(
        status=status, fields=asked, limit=None if args.all else 10,
        access_key=args.access_key,
    ))
    records = [{**item, "gpu": describe_slots(parse_slot_map(item.get("occupied_slots")),
                                              accelerators_only=True)} for item in items]
    return Table.from_records(records, fields)
