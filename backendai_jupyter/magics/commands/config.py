"""``%backendai config [show|set|reset]``: the workspace's one configuration.

One grammar (:func:`~...workspace.split_items`) for connection and session settings; changes
live in the process's workspace (never in ``os.environ``) and apply to these magics at once and
to the Backend.AI kernel's next session. ``config set``'s help lists the keys from the
workspace's own key tables, so a new key shows up there by itself.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Iterable
from typing import TYPE_CHECKING

from IPython.core.error import UsageError

from ...client import ConfigError
from ...workspace import CLIENT_KEYS, SESSION_KEYS
from ..grammar import NESTED, PROG, MagicParser, add_subcommand
from ..results import Table

if TYPE_CHECKING:
    from ..context import Context

#: A value's form, for the keys whose form is not obvious from the name.
HINTS = {
    "secret_key": "no value: prompt",
    "skip_ssl_verify": "true|false",
    "outage_limit": "seconds",
    "execute_transport": "rest|websocket",
    "resources": "cpu=2,mem=4g",
    "env": "A=1;B=2",
    "start": "first-cell|kernel-start",
    "keep": "true|false",
    "rich": "true|false",
    "upload_dir": "true|false",
    "upload_max": "size, e.g. 100m",
    "upload_file_max": "size",
}


def _keys(keys: Iterable[str]) -> str:
    return ", ".join(f"{k} ({HINTS[k]})" if k in HINTS else k for k in keys)


def set_help() -> str:
    """The KEY=VALUE help of ``config set``: every key of both tables."""
    return f"connection: {_keys(CLIENT_KEYS)}; session: {_keys(SESSION_KEYS)}"


def add_arguments(c: MagicParser) -> None:
    c.description = (
        "Show or change this process's configuration: where to connect and what session the "
        "Backend.AI kernel starts. One grammar for both; a change applies to these magics at "
        "once and to the kernel's next session (a running kernel session keeps its settings "
        "until %backendai kernel stop). `config KEY=VALUE ...` is short for "
        "`config set KEY=VALUE ...`."
    )
    cs = c.add_subparsers(dest=NESTED, metavar="COMMAND")
    add_subcommand(cs, "show", "show the configuration (default)")
    p = add_subcommand(cs, "set", "change settings for this process")
    p.add_argument("items", nargs="+", metavar="KEY=VALUE", help=set_help())
    add_subcommand(cs, "reset", "forget the changes; read BACKEND_* again")


def _prompt_secrets(items: list[str]) -> list[str]:
    """``secret_key`` without a value: ask for it (it never goes through the line)."""
    return [
        f"secret_key={getpass.getpass('Secret key: ')}"
        if item.strip().lower().replace("-", "_") == "secret_key" else item
        for item in items
    ]


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> Table | None:
    ws = ctx.workspace
    cmd = getattr(args, NESTED)
    if cmd == "reset":
        ws.reset()
        ctx.status("✓ Configuration reset to the BACKEND_* environment.")
        return None
    if cmd == "set":
        try:
            change = ws.configure(_prompt_secrets(args.items))
        except ConfigError as e:
            raise UsageError(f"{PROG} config set: {e}") from None
        ctx.status(change.describe())
        return None
    return Table(("setting", "value"), tuple(ws.describe()), "Backend.AI configuration")
