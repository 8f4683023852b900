"""Per-keypair user config: session templates, dotfiles and the bootstrap script, on disk.

State is per access key and persisted as JSON under the data directory (``templates.json``,
``userconfig.json``). The route modules and session creation (``get_template``, ``dotfiles_for``,
``bootstrap_script_for``) all read through :class:`UserConfigStore`, so it sits on its own.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ...storage.store import _now
from ..errors import Problem, not_found
from ..state import CONFIG


@dataclass
class Template:
    id: str  # uuid hex
    owner: str  # access key
    user: str  # owner user uuid
    user_email: str
    name: str
    type: str
    template: dict[str, Any]
    group: str | None = None
    domain_name: str = "default"
    created_at: str = field(default_factory=_now)


class UserConfigStore:
    """Templates, dotfiles and bootstrap scripts, persisted as JSON under the data directory."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loaded = False
        self.templates: dict[str, Template] = {}
        # access key → {"dotfiles": [{"path", "perm", "data"}], "bootstrap_script": str}
        self.users: dict[str, dict[str, Any]] = {}

    @property
    def data_dir(self) -> Path:
        return Path(self._app[CONFIG].data_dir)

    def load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        tpath, upath = self.data_dir / "templates.json", self.data_dir / "userconfig.json"
        if tpath.exists():
            raw = json.loads(tpath.read_text())
            self.templates = {t["id"]: Template(**t) for t in raw.get("templates", [])}
        if upath.exists():
            self.users = dict(json.loads(upath.read_text()).get("keypairs", {}))

    def _write(self, name: str, data: Any) -> None:
        path = self.data_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)

    def save(self) -> None:
        self._write("templates.json", {"templates": [asdict(t) for t in self.templates.values()]})
        self._write("userconfig.json", {"keypairs": self.users})

    def user(self, access_key: str) -> dict[str, Any]:
        self.load()
        return self.users.setdefault(access_key, {"dotfiles": [], "bootstrap_script": ""})


USER_CONFIG: web.AppKey[UserConfigStore] = web.AppKey("bjup_user_config", UserConfigStore)


def _store(request: web.Request) -> UserConfigStore:
    store = request.app[USER_CONFIG]
    store.load()
    return store


def _schema_error(msg: str) -> Problem:
    # 26.9.6: pydantic failures are 400 generic-bad-request "Invalid or Missing API Parameters."
    return Problem(400, "generic-bad-request", "Invalid or Missing API Parameters.", msg)


# -- helpers for session creation -----------------------------------------------------------------


def get_template(app: web.Application, template_id: str) -> dict[str, Any]:
    """The parsed ``taskTemplate`` document; 404 ``task-template-not-found`` if unknown."""
    store = app[USER_CONFIG]
    store.load()
    key = template_id.replace("-", "").lower()
    tpl = store.templates.get(key)
    if tpl is None:
        raise not_found("task-template", f"no such template: {template_id}")
    copy: dict[str, Any] = json.loads(json.dumps(tpl.template))  # the caller may modify it
    return copy


def dotfiles_for(app: web.Application, access_key: str) -> list[dict[str, Any]]:
    """``[{"path", "perm", "permission", "data"}]``: relative paths are under ``/home/work``."""
    store = app[USER_CONFIG]
    return [{**d, "permission": d["perm"]} for d in store.user(access_key)["dotfiles"]]


def bootstrap_script_for(app: web.Application, access_key: str) -> str:
    return str(app[USER_CONFIG].user(access_key).get("bootstrap_script") or "")

