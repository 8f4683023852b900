"""``%backendai vfolder ...``: storage folders (list, create, delete, ls, upload, download, ...).

Each sub-command is one ``client.folders`` call plus a one-line status; listings are
:class:`~..results.Table` s.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..grammar import NESTED, MagicParser, add_subcommand
from ..results import Table

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(v: MagicParser) -> None:
    vs = v.add_subparsers(dest=NESTED, metavar="COMMAND", required=True)
    p = add_subcommand(vs, "list", "list the folders you can access")
    p.add_argument("-a", "--all", action="store_true", help="include all folders (admins)")
    add_subcommand(vs, "list-hosts", "list the storage hosts you may use")
    p = add_subcommand(vs, "create", "create a folder")
    p.add_argument("name")
    p.add_argument("host", nargs="?", help="storage host (default: the server's default)")
    p.add_argument("-g", "--group", help="create a project folder for this project")
    p.add_argument("--usage-mode", default="general", choices=("general", "model", "data"))
    p.add_argument("-p", "--permission", default="rw", choices=("ro", "rw", "wd"))
    p.add_argument("--cloneable", action="store_true")
    p = add_subcommand(vs, "delete", "delete a folder (into the trash bin on newer managers)")
    p.add_argument("name")
    p.add_argument("--forever", action="store_true", help="also empty it from the trash bin")
    p = add_subcommand(vs, "rename", "rename a folder")
    p.add_argument("name")
    p.add_argument("new_name")
    _add_transfers(vs)
    _add_files(vs)
    p = add_subcommand(vs, "invite", "invite users (by e-mail) to a folder")
    p.add_argument("name")
    p.add_argument("emails", nargs="+", metavar="EMAIL")
    p.add_argument("-p", "--perm", default="rw", choices=("ro", "rw", "wd"))


def _add_transfers(vs: Any) -> None:
    p = add_subcommand(vs, "upload", "upload local files or directories into a folder")
    p.add_argument("name")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--dest", default="", metavar="DIR", help="folder directory to upload into")
    p = add_subcommand(vs, "download", "download files or directories from a folder")
    p.add_argument("name")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--dest", default=".", metavar="DIR", help="local directory (default: .)")


def _add_files(vs: Any) -> None:
    p = add_subcommand(vs, "ls", "list the files in a folder")
    p.add_argument("name")
    p.add_argument("path", nargs="?", default="", help="directory inside the folder")
    p = add_subcommand(vs, "mkdir", "create a directory in a folder")
    p.add_argument("name")
    p.add_argument("path")
    p.add_argument("-p", "--parents", action="store_true", help="create parents as needed")
    p.add_argument("--exist-ok", action="store_true", help="no error if it exists")
    p = add_subcommand(vs, "mv", "move or rename a file inside a folder")
    p.add_argument("name")
    p.add_argument("src")
    p.add_argument("dst")
    p = add_subcommand(vs, "rm", "delete files in a folder")
    p.add_argument("name")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("-r", "--recursive", action="store_true", help="delete directories too")


def _listing(ctx: Context, args: argparse.Namespace) -> Table:
    f = ctx.client.folders
    cmd = getattr(args, NESTED)
    if cmd == "list":
        folders = ctx.call(f.list(all=args.all))
        cols = ("name", "id", "host", "permission", "ownership_type", "usage_mode", "status")
        return Table.from_records([{**x.raw, "name": x.name, "id": x.id, "host": x.host}
                                   for x in folders], cols)
    if cmd == "list-hosts":
        hosts = ctx.call(f.list_hosts())
        default = hosts.get("default")
        rows = tuple((h, "yes" if h == default else "") for h in hosts.get("allowed") or [])
        return Table(("host", "default"), rows, f"Default host: {default}")
    entries = ctx.call(f.list_files(args.name, args.path))
    return Table.from_records(entries, ("name", "type", "size", "modified", "mode"))


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> Any:
    cmd = getattr(args, NESTED)
    if cmd in ("list", "list-hosts", "ls"):
        return _listing(ctx, args)
    f = ctx.client.folders
    if cmd == "create":
        info = ctx.call(f.create(args.name, args.host, group=args.group,
                                 usage_mode=args.usage_mode, permission=args.permission,
                                 cloneable=args.cloneable))
        ctx.status(f"✓ Folder {info.name} created ({info.id}).")
    elif cmd == "delete":
        ctx.call(f.delete(args.name, forever=args.forever))
        ctx.status(f"✓ Folder {args.name} deleted.")
    elif cmd == "rename":
        ctx.call(f.rename(args.name, args.new_name))
        ctx.status(f"✓ Folder {args.name} renamed to {args.new_name}.")
    elif cmd == "upload":
        for path in args.paths:
            remote = f"{args.dest.rstrip('/')}/" if args.dest else None
            ctx.call(f.upload(args.name, path, remote))
            ctx.status(f"✓ Uploaded {path} to {args.name}.")
    elif cmd == "download":
        for path in args.paths:
            Path(args.dest).mkdir(parents=True, exist_ok=True)
            target = ctx.call(f.download(args.name, path, args.dest))
            ctx.status(f"✓ Downloaded {target}")
    elif cmd == "mkdir":
        ctx.call(f.mkdir(args.name, args.path, parents=args.parents, exist_ok=args.exist_ok))
        ctx.status(f"✓ Created {args.path} in {args.name}.")
    elif cmd == "mv":
        ctx.call(f.move_file(args.name, args.src, args.dst))
        ctx.status(f"✓ Moved {args.src} to {args.dst} in {args.name}.")
    elif cmd == "rm":
        ctx.call(f.delete_files(args.name, args.paths, recursive=args.recursive))
        ctx.status(f"✓ Deleted {len(args.paths)} path(s) in {args.name}.")
    elif cmd == "invite":
        ctx.call(f.invite(args.name, args.emails, args.perm))
        ctx.status(f"✓ Invited {', '.join(args.emails)} to {args.name} ({args.perm}).")
    return None
