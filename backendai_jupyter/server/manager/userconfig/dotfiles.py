"""``/user-config`` routes: dotfiles and the bootstrap script, with the manager's limits.

Limits and messages follow 26.9.6 (64 KiB in all, 100 entries, reserved paths, ``NNN`` octal
permissions).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from ...storage.context import _params, _whoami
from ..errors import Problem, invalid_api_params
from .store import _schema_error, _store

MAXIMUM_DOTFILE_SIZE = 64 * 1024
MAXIMUM_DOTFILE_COUNT = 100
RESERVED_DOTFILES = (".terminfo", ".jupyter", ".ssh", ".ssh/authorized_keys", ".local", ".config")
_PERM_RE = re.compile(r"^[0-7]{3}$")


def _no_dotfile() -> Problem:
    return Problem(404, "object-not-found", "No such dotfile.")


def _dotfile_params(params: dict[str, Any]) -> tuple[str, str, str]:
    path, data, perm = params.get("path"), params.get("data"), params.get("permission")
    if not isinstance(path, str) or not path:
        raise _schema_error("path: Field required")
    if not isinstance(data, str):
        raise _schema_error("data: Field required")
    if not isinstance(perm, str) or not _PERM_RE.match(perm):
        raise _schema_error("permission: String should match pattern '^[0-7]{3}$'")
    return path, data, perm


def _check_size(entries: list[dict[str, Any]]) -> None:
    # The manager msgpack-packs the list; compact JSON is within a few bytes of it.
    if len(json.dumps(entries, separators=(",", ":")).encode()) > MAXIMUM_DOTFILE_SIZE:
        raise Problem(400, "generic-bad-request", "Dotfile creation has failed.",
                      "No leftover space for dotfile storage")


async def create_dotfile(request: web.Request) -> web.Response:
    ak, _, _ = _whoami(request)
    path, data, perm = _dotfile_params(await _params(request))
    if path in RESERVED_DOTFILES:
        raise invalid_api_params("dotfile path is reserved for internal operations.")
    store = _store(request)
    entries: list[dict[str, Any]] = store.user(ak)["dotfiles"]
    if any(e["path"] == path for e in entries):
        raise Problem(400, "generic-bad-request", "Dotfile already exists.")
    if len(entries) >= MAXIMUM_DOTFILE_COUNT:
        raise Problem(400, "generic-bad-request", "Dotfile creation has failed.",
                      "Dotfile creation limit reached")
    new = [*entries, {"path": path, "perm": perm, "data": data}]
    _check_size(new)
    store.user(ak)["dotfiles"] = new
    store.save()
    return web.json_response({})


async def list_dotfiles(request: web.Request) -> web.Response:
    ak, _, _ = _whoami(request)
    entries = _store(request).user(ak)["dotfiles"]
    path = request.query.get("path")
    if path is None:
        params = await _params(request)
        path = params.get("path") if isinstance(params.get("path"), str) else None
    if path is not None:
        for e in entries:
            if e["path"] == path:
                # 26.9.6 answers "perm" for one entry; "permission" is added for older clients.
                return web.json_response(
                    {"path": e["path"], "perm": e["perm"], "permission": e["perm"],
                     "data": e["data"]}
                )
        raise _no_dotfile()
    return web.json_response(
        [{"path": e["path"], "permission": e["perm"], "data": e["data"]} for e in entries]
    )


async def update_dotfile(request: web.Request) -> web.Response:
    ak, _, _ = _whoami(request)
    path, data, perm = _dotfile_params(await _params(request))
    store = _store(request)
    entries: list[dict[str, Any]] = store.user(ak)["dotfiles"]
    if not any(e["path"] == path for e in entries):
        raise _no_dotfile()
    new = [e for e in entries if e["path"] != path] + [{"path": path, "perm": perm, "data": data}]
    _check_size(new)
    store.user(ak)["dotfiles"] = new
    store.save()
    return web.json_response({})


async def delete_dotfile(request: web.Request) -> web.Response:
    ak, _, _ = _whoami(request)
    params = await _params(request)
    path = params.get("path")
    store = _store(request)
    entries: list[dict[str, Any]] = store.user(ak)["dotfiles"]
    kept = [e for e in entries if e["path"] != path]
    if len(kept) == len(entries):
        raise _no_dotfile()
    store.user(ak)["dotfiles"] = kept
    store.save()
    return web.json_response({"success": True})


async def get_bootstrap(request: web.Request) -> web.Response:
    ak, _, _ = _whoami(request)
    return web.json_response(str(_store(request).user(ak).get("bootstrap_script") or ""))


async def set_bootstrap(request: web.Request) -> web.Response:
    ak, _, _ = _whoami(request)
    params = await _params(request)
    script = params.get("script")
    if not isinstance(script, str):
        raise _schema_error("script: Field required")
    script = script.replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(script) > MAXIMUM_DOTFILE_SIZE:
        raise Problem(400, "generic-bad-request", "Dotfile creation has failed.",
                      "Maximum bootstrap script length reached")
    store = _store(request)
    store.user(ak)["bootstrap_script"] = script
    store.save()
    return web.json_response({})

