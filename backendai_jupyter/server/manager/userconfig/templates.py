"""``/template/session`` routes: create, list, get (YAML or JSON), update and delete templates.

A template is a ``taskTemplate`` document (YAML or JSON), validated here just enough for session
creation to rely on ``metadata.name`` and ``spec.kernel.image``.
"""

from __future__ import annotations

import uuid
from typing import Any

import yaml
from aiohttp import web

from ...storage.context import _params, _whoami
from ..errors import invalid_api_params, not_found
from .store import Template, _store


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

