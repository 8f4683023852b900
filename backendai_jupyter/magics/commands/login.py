"""``%backendai login``: switch to a session-mode endpoint and log in (password prompted)."""

from __future__ import annotations

import argparse
import getpass
from typing import TYPE_CHECKING

from IPython.core.error import UsageError

from ...client import AuthError, ConfigError
from ..errors import CommandError
from ..grammar import PROG, MagicParser

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(p: MagicParser) -> None:
    p.add_argument("-u", "--username", help="user name or e-mail (else: prompted)")
    p.add_argument("--endpoint", help="webserver URL (default: the configured endpoint)")


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> None:
    items = ["endpoint_type=session"]
    if args.endpoint:
        items.append(f"endpoint={args.endpoint}")
    try:
        ctx.workspace.configure(items)
    except ConfigError as e:
        raise UsageError(f"{PROG} login: {e}") from None
    username = args.username or input("Username: ")
    password = getpass.getpass("Password: ")
    client = ctx.client
    try:
        ctx.call(client.login(username, password))
    except AuthError as e:
        raise CommandError(f"{PROG} login: login failed: {e.msg}") from None
    ctx.status("✓ Login succeeded.")
