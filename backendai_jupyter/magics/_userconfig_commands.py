"""``sesstpl ...`` and ``dotfile ...``: session templates and dotfiles, with a payload from
``--data``, ``-f FILE`` or the ``%%backendai`` cell body.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ._parser import PROG
from .results import Table

if TYPE_CHECKING:
    from .magics import BackendAIMagics


def _payload(args: argparse.Namespace, cell: str | None, what: str) -> str:
    data: str | None = getattr(args, "data", None)
    path: str | None = getattr(args, "file", None)
    given = [x for x in (data, path, cell if cell and cell.strip() else None) if x is not None]
    if len(given) > 1:
        raise UsageError(f"{PROG}: give the {what} once: --data, -f FILE or the cell body")
    if path is not None:
        try:
            return Path(path).read_text()
        except OSError as e:
            raise UsageError(f"{PROG}: cannot read {path}: {e.strerror or e}") from None
    if data is not None:
        return data
    if cell and cell.strip():
        return cell
    raise UsageError(f"{PROG}: no {what}: give -f FILE or use %%backendai with a cell body")


def sesstpl(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> Any:
    t = m.client.templates
    cmd = args.tcommand
    if cmd == "create":
        ids = m._call(t.create(_payload(args, cell, "template"), group=args.group,
                               domain=args.domain))
        m._status(f"✓ Template created: {', '.join(ids)}")
        return ids[0] if len(ids) == 1 else ids
    if cmd == "list":
        items = m._call(t.list(all=args.all))
        cols = ("name", "id", "created_at", "is_owner", "user_email", "group_name", "type")
        present = [c for c in cols if any(c in i for i in items)] or ["name", "id"]
        return Table.from_records(items, present)
    if cmd == "get":
        print(m._call(t.get(args.template_id, format=args.format)))
    elif cmd == "update":
        m._call(t.update(args.template_id, _payload(args, cell, "template")))
        m._status(f"✓ Template {args.template_id} updated.")
    elif cmd == "delete":
        m._call(t.delete(args.template_id))
        m._status(f"✓ Template {args.template_id} deleted.")
    return None


def dotfile(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> Any:
    d = m.client.dotfiles
    cmd = args.dcommand
    if cmd in ("create", "update") and not re.fullmatch(r"[0-7]{3}", args.permission):
        raise UsageError(f"{PROG} dotfile: --permission must be 3 octal digits, "
                         f"got {args.permission!r}")
    if cmd == "create":
        m._call(d.create(args.path, _payload(args, cell, "content"), args.permission))
        m._status(f"✓ Dotfile {args.path} created.")
    elif cmd == "update":
        m._call(d.update(args.path, _payload(args, cell, "content"), args.permission))
        m._status(f"✓ Dotfile {args.path} updated.")
    elif cmd == "list":
        return Table.from_records(m._call(d.list()), ("path", "permission", "data"))
    elif cmd == "get":
        print(m._call(d.get(args.path)).get("data", ""), end="")
    elif cmd == "delete":
        m._call(d.delete(args.path))
        m._status(f"✓ Dotfile {args.path} deleted.")
    return None
