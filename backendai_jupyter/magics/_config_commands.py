"""``config``, ``login``, ``logout``, ``kernel``: the workspace's configuration and session.

One grammar (:func:`~..workspace.split_items`) for connection and session settings; changes
live in the process's workspace (never in ``os.environ``) and apply to these magics at once and
to the Backend.AI kernel's next session.
"""

from __future__ import annotations

import argparse
import getpass
from typing import TYPE_CHECKING

from IPython.core.error import UsageError

from ..client import AuthError, ConfigError
from ._parser import PROG
from .errors import CommandError
from .results import Table

if TYPE_CHECKING:
    from .magics import BackendAIMagics


def _prompt_secrets(items: list[str]) -> list[str]:
    """``secret_key`` without a value: ask for it (it never goes through the line)."""
    return [
        f"secret_key={getpass.getpass('Secret key: ')}"
        if item.strip().lower().replace("-", "_") == "secret_key" else item
        for item in items
    ]


def config(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> Table | None:
    ws = m.workspace
    if args.ccommand == "reset":
        ws.reset()
        m._status("✓ Configuration reset to the BACKEND_* environment.")
        return None
    if args.ccommand == "set":
        try:
            change = ws.configure(_prompt_secrets(args.items))
        except ConfigError as e:
            raise UsageError(f"{PROG} config set: {e}") from None
        m._status(change.describe())
        return None
    return Table(("setting", "value"), tuple(ws.describe()), "Backend.AI configuration")


def kernel(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> None:
    ws = m.workspace
    session = ws.session
    if args.kcommand == "stop":
        if ws.run(ws.stop_session()):
            m._status("✓ Kernel session stopped; the next remote cell starts a new one.")
        else:
            m._status("No kernel session is running.")
        return
    if session.active:
        mode = "rich" if session.rich else "plain"
        gpu = f", {session.allocation}" if session.allocation else ""
        print(f"session {session.session_name} ({session.session_id}), {mode} output{gpu}")
    else:
        print("no kernel session yet; the Backend.AI kernel starts one with its first remote cell")


def login(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> None:
    items = ["endpoint_type=session"]
    if args.endpoint:
        items.append(f"endpoint={args.endpoint}")
    try:
        m.workspace.configure(items)
    except ConfigError as e:
        raise UsageError(f"{PROG} login: {e}") from None
    username = args.username or input("Username: ")
    password = getpass.getpass("Password: ")
    client = m.client

    try:
        m._call(client.login(username, password))
    except AuthError as e:
        raise CommandError(f"{PROG} login: login failed: {e.msg}") from None
    m._status("✓ Login succeeded.")


def logout(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> None:
    if m.client_config.endpoint_type != "session":
        raise UsageError(f"{PROG} logout: not in session mode (see %backendai login)")
    client = m.client

    m._call(client.logout())
    m._status("✓ Logout done.")
