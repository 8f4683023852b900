"""``/resource`` and ``/config`` routes: resource presets, check-presets, slots, scaling groups.

Resource presets come from ``<data_dir>/presets.json`` (the manager's fixture format,
``{"resource_presets": [...]}``) or built-in defaults. ``check-presets`` reports what the scheduler
really has (:func:`state.resource_usage`); keypair and project limits are unlimited on a local
endpoint (``"Infinity"``). Nothing here is per-user state, hence apart from :mod:`.store`.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from aiohttp import web

from ...agent.limits import format_amount
from ...storage.context import _params, _whoami
from ..errors import Problem
from ..scheduler import resource_usage
from ..state import CONFIG

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

