"""``config``, ``login``, ``logout``: the connection settings of this kernel's client.

Settings are ``BACKEND_*`` overrides kept on the :class:`~.magics.BackendAIMagics` instance
(applied with its ``_apply_env``), never in ``os.environ``.
"""

from __future__ import annotations

import argparse
import getpass
from typing import TYPE_CHECKING

from IPython.core.error import UsageError

from ..client import AuthError
from ._parser import PROG
from .errors import CommandError
from .results import Table

if TYPE_CHECKING:
    from .magics import BackendAIMagics

_CONFIG_KEYS = {
    "endpoint": "ENDPOINT", "endpoint_type": "ENDPOINT_TYPE", "access_key": "ACCESS_KEY",
    "secret_key": "SECRET_KEY", "domain": "DOMAIN", "group": "GROUP",
    "vfolder_mounts": "VFOLDER_MOUNTS", "skip_ssl_verify": "SKIP_SSLCERT_VALIDATION",
    "api_version": "API_VERSION",
}


def config(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> Table | None:
    if args.ccommand == "reset":
        m._env_overrides.clear()
        m._reset_client()
        m._status("✓ Configuration reset to the BACKEND_* environment.")
        return None
    if args.ccommand == "set":
        changes: dict[str, str] = {}
        for item in args.items:
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            if key not in _CONFIG_KEYS:
                raise UsageError(f"{PROG} config set: unknown key {key!r} "
                                 f"(one of {', '.join(_CONFIG_KEYS)})")
            if not sep:
                if key != "secret_key":
                    raise UsageError(f"{PROG} config set: expected KEY=VALUE, got {item!r}")
                value = getpass.getpass("Secret key: ")
            changes["BACKEND_" + _CONFIG_KEYS[key]] = value.strip()
        m._apply_env(changes)
        m._status("✓ Configuration updated.")
        return None
    info = m.client_config.describe()
    return Table(("setting", "value"), tuple(info.items()), "Backend.AI configuration")


def login(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> None:
    changes = {"BACKEND_ENDPOINT_TYPE": "session"}
    if args.endpoint:
        changes["BACKEND_ENDPOINT"] = args.endpoint
    m._apply_env(changes)
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
