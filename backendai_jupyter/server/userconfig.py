"""Session templates, dotfiles, bootstrap scripts, resource presets (protocol.md §9).

State is per access key and persisted as JSON under the data directory (``templates.json``,
``userconfig.json``); resource presets come from ``<data_dir>/presets.json`` (the manager's
fixture format, ``{"resource_presets": [...]}``) or built-in defaults. ``check-presets`` reports
what the scheduler really has (:func:`state.resource_usage`); keypair and project limits are
unlimited on a local endpoint (``"Infinity"``).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from .errors import Problem, invalid_api_params, not_found
from .folders import _now, _params, _whoami
from .limits import format_amount
from .state import CONFIG, resource_usage

__all__ = [
    "DEFAULT_PRESETS",
    "USER_CONFIG",
    "UserConfigStore",
    "bootstrap_script_for",
    "dotfiles_for",
    "get_template",
    "setup",
]

MAXIMUM_DOTFILE_SIZE = 64 * 1024
MAXIMUM_DOTFILE_COUNT = 100
RESERVED_DOTFILES = (".terminfo", ".jupyter", ".ssh", ".ssh/authorized_keys", ".local", ".config")
_PERM_RE = re.compile(r"^[0-7]{3}$")
_SCALING_GROUP = "default"

#: The manager fixture's presets (``fixtures/manager/fixed-resource-presets.json``).
DEFAULT_PRESETS: list[dict[str, Any]] = [
    {"name": "cpu01-small", "resource_slots": {"cpu": "1", "mem": "1073741824"}},
    {"name": "cpu02-medium", "resource_slots": {"cpu": "4", "mem": "8589934592"},
     "shared_memory": 1073741824},
    {"name": "cpu03-large", "resource_slots": {"cpu": "8", "mem": "17179869184"},
     "shared_memory": 2147483648},
    {"name": "cuda01-small",
     "resource_slots": {"cpu": "1", "mem": "4294967296", "cuda.device": "1", "cuda.shares": "0.5"}},
    {"name": "cuda02-medium",
     "resource_slots": {"cpu": "4", "mem": "17179869184", "cuda.device": "2", "cuda.shares": "2.0"},
     "shared_memory": 1073741824},
    {"name": "cuda03-large",
     "resource_slots": {"cpu": "8", "mem": "34359738368", "cuda.device": "4", "cuda.shares": "4.0"},
     "shared_memory": 2147483648},
]
_SLOT_UNITS = {"cpu": "count", "mem": "bytes", "cuda.device": "count", "cuda.shares": "count"}


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


# -- session templates ----------------------------------------------------------------------------


def _parse_payload(payload: Any) -> list[dict[str, Any]]:
    if isinstance(payload, (dict, list)):
        doc: Any = payload
    elif isinstance(payload, str):
        try:
            doc = yaml.safe_load(payload)  # JSON is YAML
        except yaml.YAMLError as e:
            raise invalid_api_params(f"Malformed payload: {e}") from None
    else:
        raise invalid_api_params("payload is required")
    docs = doc if isinstance(doc, list) else [doc]
    for d in docs:
        _validate_template(d)
    return docs


def _validate_template(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise invalid_api_params("The template must be a mapping.")
    if doc.get("kind") != "taskTemplate":
        raise invalid_api_params("kind must be 'taskTemplate'", data={"kind": doc.get("kind")})
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise invalid_api_params("metadata.name is required", data={"metadata": "required"})
    spec = doc.get("spec")
    kernel = spec.get("kernel") if isinstance(spec, dict) else None
    if not isinstance(kernel, dict) or not isinstance(kernel.get("image"), str):
        raise invalid_api_params("spec.kernel.image is required", data={"spec": "invalid"})
    mounts = spec.get("mounts") if isinstance(spec, dict) else None
    if mounts is not None and not isinstance(mounts, dict):
        raise invalid_api_params("spec.mounts must be a mapping", data={"spec.mounts": "invalid"})


def _template_json(t: Template, ak: str) -> dict[str, Any]:
    return {
        "name": t.name,
        "id": t.id,
        "created_at": t.created_at,
        "is_owner": t.owner == ak,
        "user": t.user,
        "group": t.group,
        "user_email": t.user_email,
        "group_name": t.group,
        "domain_name": t.domain_name,
        "type": t.type,
        "template": t.template,
    }


def _find_template(request: web.Request) -> Template:
    ak, _, _ = _whoami(request)
    tid = request.match_info["template_id"].replace("-", "").lower()
    tpl = _store(request).templates.get(tid)
    if tpl is None or tpl.owner != ak:
        raise not_found("task-template")
    return tpl


async def create_template(request: web.Request) -> web.Response:
    ak, email, uid = _whoami(request)
    params = await _params(request)
    docs = _parse_payload(params.get("payload"))
    store = _store(request)
    created = []
    for doc in docs:
        tpl = Template(
            id=uuid.uuid4().hex, owner=ak, user=uid, user_email=email,
            name=str(doc["metadata"]["name"]), type=str(params.get("type") or "task"),
            template=doc, group=params.get("group_name") or params.get("group"),
            domain_name=str(params.get("domain_name") or params.get("domain") or "default"),
        )
        store.templates[tpl.id] = tpl
        created.append({"id": tpl.id, "user": uid})
    store.save()
    return web.json_response(created)


async def list_templates(request: web.Request) -> web.Response:
    ak, _, _ = _whoami(request)
    store = _store(request)
    items = [_template_json(t, ak) for t in store.templates.values() if t.owner == ak]
    return web.json_response(items)


async def get_template_handler(request: web.Request) -> web.Response:
    tpl = _find_template(request)
    fmt = request.query.get("format", "yaml")
    if fmt == "json":
        return web.json_response(tpl.template)
    if fmt != "yaml":
        raise invalid_api_params("format must be yaml or json")
    text = yaml.safe_dump(tpl.template, sort_keys=False)
    return web.Response(text=text, content_type="text/yaml")


async def update_template(request: web.Request) -> web.Response:
    tpl = _find_template(request)
    params = await _params(request)
    docs = _parse_payload(params.get("payload"))
    if len(docs) != 1:
        raise invalid_api_params("exactly one template expected")
    tpl.template = docs[0]
    tpl.name = str(docs[0]["metadata"]["name"])
    _store(request).save()
    return web.json_response({"success": True})


async def delete_template(request: web.Request) -> web.Response:
    tpl = _find_template(request)
    store = _store(request)
    del store.templates[tpl.id]
    store.save()
    return web.json_response({"success": True})


# -- dotfiles and bootstrap script ----------------------------------------------------------------


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


# -- resources ------------------------------------------------------------------------------------


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


def _load_presets(app: web.Application) -> list[dict[str, Any]]:
    path = Path(app[CONFIG].data_dir) / "presets.json"
    raw: Any = DEFAULT_PRESETS
    if path.exists():
        try:
            raw = json.loads(path.read_text())
        except ValueError:
            raise Problem(500, "server-misconfigured", "Service misconfigured.",
                          f"{path} is not valid JSON") from None
        if isinstance(raw, dict):
            raw = raw.get("resource_presets", raw.get("presets", []))
    presets = []
    for p in raw if isinstance(raw, list) else []:
        if not isinstance(p, dict) or "name" not in p:
            continue
        shm = p.get("shared_memory")
        presets.append({
            "id": str(p.get("id") or uuid.uuid5(uuid.NAMESPACE_OID, f"preset:{p['name']}")),
            "name": str(p["name"]),
            "shared_memory": None if shm is None else str(shm),
            "resource_slots": {
                k: format_amount(_dec(v)) for k, v in dict(p.get("resource_slots", {})).items()
            },
        })
    return presets


def _slots(app: web.Application) -> list[str]:
    usage = resource_usage(app)
    return list(dict.fromkeys([*usage.get("total", {}), *usage.get("used", {})]))


def _with_all_slots(slots: dict[str, str], names: list[str]) -> dict[str, str]:
    out = dict(slots)
    for name in names:
        out.setdefault(name, "0")
    return out


async def list_presets(request: web.Request) -> web.Response:
    names = _slots(request.app)
    presets = _load_presets(request.app)
    for p in presets:
        p["resource_slots"] = _with_all_slots(p["resource_slots"], names)
    return web.json_response({"presets": presets})


def _fmt(values: dict[str, Decimal]) -> dict[str, str]:
    return {k: format_amount(v) for k, v in values.items()}


async def check_presets(request: web.Request) -> web.Response:
    _whoami(request)
    params = await _params(request)
    sgroup = params.get("scaling_group") or _SCALING_GROUP
    if sgroup != _SCALING_GROUP:
        raise Problem(404, "scaling-group-not-found", "No such scaling group.", str(sgroup))
    usage = resource_usage(request.app)
    names = _slots(request.app)
    total = {k: _dec(usage.get("total", {}).get(k, 0)) for k in names}
    used = {k: _dec(usage.get("used", {}).get(k, 0)) for k in names}
    remaining = {k: max(total[k] - used[k], Decimal(0)) for k in names}
    infinite = {k: "Infinity" for k in names}
    presets = []
    for p in _load_presets(request.app):
        need = {k: _dec(v) for k, v in p["resource_slots"].items()}
        allocatable = all(v <= remaining.get(k, Decimal(0)) for k, v in need.items() if v > 0)
        presets.append({**p, "resource_slots": _with_all_slots(p["resource_slots"], names),
                        "allocatable": allocatable})
    return web.json_response({
        "keypair_limits": infinite,
        "keypair_using": _fmt(used),
        "keypair_remaining": infinite,
        "group_limits": infinite,
        "group_using": _fmt(used),
        "group_remaining": infinite,
        "scaling_group_remaining": _fmt(remaining),
        "scaling_groups": {_SCALING_GROUP: {"using": _fmt(used), "remaining": _fmt(remaining)}},
        "presets": presets,
    })


async def resource_slots(request: web.Request) -> web.Response:
    return web.json_response({k: _SLOT_UNITS.get(k, "count") for k in _slots(request.app)})


async def resource_slot_details(request: web.Request) -> web.Response:
    human = {"cpu": ("CPU", "Core"), "mem": ("RAM", "GiB"), "cuda.device": ("GPU", "GPU"),
             "cuda.shares": ("fGPU", "fGPU")}
    out = {}
    for k in _slots(request.app):
        name, unit = human.get(k, (k, k))
        out[k] = {"slot_name": k, "description": name, "human_readable_name": name,
                  "display_unit": unit,
                  "number_format": {"binary": k == "mem", "round_length": 0},
                  "display_icon": "cpu"}
    return web.json_response(out)


async def vfolder_types(request: web.Request) -> web.Response:
    return web.json_response(["user"])


async def scaling_groups(request: web.Request) -> web.Response:
    _whoami(request)
    return web.json_response({"scaling_groups": [{"name": _SCALING_GROUP}]})


def setup(app: web.Application) -> None:
    """Register ``/template/session``, ``/user-config``, ``/resource``, ``/config`` routes."""
    app[USER_CONFIG] = UserConfigStore(app)
    r = app.router
    r.add_post("/template/session", create_template)
    r.add_get("/template/session", list_templates)
    r.add_get("/template/session/{template_id}", get_template_handler)
    r.add_put("/template/session/{template_id}", update_template)
    r.add_delete("/template/session/{template_id}", delete_template)
    r.add_post("/user-config/dotfiles", create_dotfile)
    r.add_get("/user-config/dotfiles", list_dotfiles)
    r.add_patch("/user-config/dotfiles", update_dotfile)
    r.add_delete("/user-config/dotfiles", delete_dotfile)
    r.add_post("/user-config/bootstrap-script", set_bootstrap)
    r.add_get("/user-config/bootstrap-script", get_bootstrap)
    r.add_get("/resource/presets", list_presets)
    r.add_post("/resource/check-presets", check_presets)
    r.add_get("/config/resource-slots", resource_slots)
    r.add_get("/config/resource-slots/details", resource_slot_details)
    r.add_get("/config/vfolder-types", vfolder_types)
    r.add_get("/scaling-groups", scaling_groups)
