"""``vfolder ...``: storage folder commands (list, create, delete, ls, upload, download, ...).

Each sub-command is one ``client.folders`` call plus a one-line status; listings are
:class:`~.results.Table` s.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .results import Table

if TYPE_CHECKING:
    from .magics import BackendAIMagics


def vfolder(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> Any:
    f = m.client.folders
    cmd = args.vcommand
    if cmd == "list":
        folders = m._call(f.list(all=args.all))
        cols = ("name", "id", "host", "permission", "ownership_type", "usage_mode", "status")
        return Table.from_records([{**x.raw, "name": x.name, "id": x.id, "host": x.host}
                                   for x in folders], cols)
    if cmd == "list-hosts":
        hosts = m._call(f.list_hosts())
        default = hosts.get("default")
        rows = tuple((h, "yes" if h == default else "") for h in hosts.get("allowed") or [])
        return Table(("host", "default"), rows, f"Default host: {default}")
    if cmd == "ls":
        entries = m._call(f.list_files(args.name, args.path))
        return Table.from_records(entries, ("name", "type", "size", "modified", "mode"))
    if cmd == "create":
        info = m._call(f.create(args.name, args.host, group=args.group,
                                usage_mode=args.usage_mode, permission=args.permission,
                                cloneable=args.cloneable))
        m._status(f"✓ Folder {info.name} created ({info.id}).")
    elif cmd == "delete":
        m._call(f.delete(args.name, forever=args.forever))
        m._status(f"✓ Folder {args.name} deleted.")
    elif cmd == "rename":
        m._call(f.rename(args.name, args.new_name))
        m._status(f"✓ Folder {args.name} renamed to {args.new_name}.")
    elif cmd == "upload":
        for path in args.paths:
            remote = f"{args.dest.rstrip('/')}/" if args.dest else None
            m._call(f.upload(args.name, path, remote))
            m._status(f"✓ Uploaded {path} to {args.name}.")
    elif cmd == "download":
        for path in args.paths:
            Path(args.dest).mkdir(parents=True, exist_ok=True)
            target = m._call(f.download(args.name, path, args.dest))
            m._status(f"✓ Downloaded {target}")
    elif cmd == "mkdir":
        m._call(f.mkdir(args.name, args.path, parents=args.parents,
                        exist_ok=args.exist_ok))
        m._status(f"✓ Created {args.path} in {args.name}.")
    elif cmd == "mv":
        m._call(f.move_file(args.name, args.src, args.dst))
        m._status(f"✓ Moved {args.src} to {args.dst} in {args.name}.")
    elif cmd == "rm":
        m._call(f.delete_files(args.name, args.paths, recursive=args.recursive))
        m._status(f"✓ Deleted {len(args.paths)} path(s) in {args.name}.")
    elif cmd == "invite":
        m._call(f.invite(args.name, args.emails, args.perm))
        m._status(f"✓ Invited {', '.join(args.emails)} to {args.name} ({args.perm}).")
    return None
