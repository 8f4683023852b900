"""The GraphQL subset the clients use (``/admin/gql`` and ``/admin/graphql``).

Not a general engine: a small parser for one operation (fields, aliases, arguments, variables,
nested selections; no fragments or directives) and resolvers for the root fields that the
official 26.9.6 CLI and this package send — ``compute_session_list``, ``compute_session``,
``keypair``, ``user`` and ``vfolder_list``. Answers follow a 26.9.6 manager (cluster-facts §5):
``type`` upper-case, slot maps and ``idle_checks`` as JSON strings, an unknown status name
rejected as ``'NAME'``, unknown fields as ``Cannot query field 'x' on type 'T'.``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from ..agent.services import service_ports as _service_ports
from .auth import ACCESS_KEY
from .errors import Problem, read_json
from .state import CONFIG, KEYPAIRS, REGISTRY, ComputeSession, Keypair

__all__ = ["GqlError", "Selection", "execute", "gql_handler", "parse"]

# 26.9.6 SessionStatus members: RESIZING, SUSPENDED and BUILDING are gone (the manager answers
# "'RESIZING'"); emulated older managers still know them.
STATUSES = frozenset(
    "PENDING SCHEDULED PREPARING PULLING PREPARED CREATING RUNNING RESTARTING RUNNING_DEGRADED "
    "TERMINATING TERMINATED ERROR CANCELLED DEPRIORITIZING".split()
)
OLD_STATUSES = STATUSES | {"RESIZING", "SUSPENDED", "BUILDING"}


class GqlError(Exception):
    """One GraphQL error; the message is what graphene would say."""


@dataclass
class Selection:
    name: str
    alias: str
    args: dict[str, Any] = field(default_factory=dict)
    fields: list[Selection] = field(default_factory=list)


# -- parsing --------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r'\s+|,|#[^\n]*|(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)'
    r"|(?P<var>\$[_A-Za-z]\w*)|(?P<name>[_A-Za-z]\w*)|(?P<punct>\.\.\.|[{}()\[\]:!=@])"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise GqlError(f"Syntax Error: Unexpected character: {text[pos]!r}.")
        pos = m.end()
        if m.lastgroup is not None:
            out.append((m.lastgroup, m.group(m.lastgroup)))
    return out


#: How deep selections and list values may nest (the schema itself is 4 levels deep).
MAX_DEPTH = 32


class _Parser:
    def __init__(self, text: str, variables: dict[str, Any]) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.variables = variables
        self.depth = 0

    def nest(self) -> None:
        """Selections and lists nest at most :data:`MAX_DEPTH` deep (no recursion overflow)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise GqlError(f"Query is nested deeper than {MAX_DEPTH} levels.")

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            got = "<EOF>" if tok is None else repr(tok[1])
            raise GqlError(f"Syntax Error: Expected {value or 'a token'}, found {got}.")
        self.i += 1
        return tok

    def document(self) -> list[Selection]:
        tok = self.peek()
        if tok is not None and tok[0] == "name":
            if tok[1] != "query":
                raise GqlError(f"The local endpoint does not support '{tok[1]}' operations.")
            self.take()
            nxt = self.peek()
            if nxt is not None and nxt[0] == "name":
                self.take()
            if self.peek() == ("punct", "("):  # variable definitions: skipped
                depth = 0
                while True:
                    t = self.take()
                    depth += {"(": 1, ")": -1}.get(t[1], 0) if t[0] == "punct" else 0
                    if depth == 0:
                        break
        return self.selection_set()

    def selection_set(self) -> list[Selection]:
        self.take("{")
        self.nest()
        out: list[Selection] = []
        while self.peek() != ("punct", "}"):
            kind, name = self.take()
            if kind != "name":
                raise GqlError(f"Syntax Error: Expected Name, found {name!r}.")
            sel = Selection(name=name, alias=name)
            if self.peek() == ("punct", ":"):
                self.take()
                sel.name = self.take()[1]
            if self.peek() == ("punct", "("):
                self.take()
                while self.peek() != ("punct", ")"):
                    key = self.take()[1]
                    self.take(":")
                    sel.args[key] = self.value()
                self.take(")")
            if self.peek() == ("punct", "{"):
                sel.fields = self.selection_set()
            out.append(sel)
        self.take("}")
        self.depth -= 1
        return out

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "var":
            return self.variables.get(text[1:])
        if kind == "str":
            return json.loads(text)
        if kind == "num":
            return json.loads(text)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, text)
        if text == "[":
            self.nest()
            items = []
            while self.peek() != ("punct", "]"):
                items.append(self.value())
            self.take("]")
            self.depth -= 1
            return items
        raise GqlError(f"Syntax Error: Unexpected {text!r}.")


def parse(text: str, variables: dict[str, Any] | None = None) -> list[Selection]:
    return _Parser(text, variables or {}).document()


# -- resolving ------------------------------------------------------------------------------------


def _select(obj: dict[str, Any], sels: list[Selection], type_name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sel in sels:
        if sel.name == "__typename":
            out[sel.alias] = type_name
            continue
        if sel.name not in obj:
            raise GqlError(f"Cannot query field '{sel.name}' on type '{type_name}'.")
        value = obj[sel.name]
        if callable(value):
            value = value()
        if sel.fields and isinstance(value, dict):
            sub_type = value.pop("__typename", sel.name)
            value = _select(value, sel.fields, sub_type)
        elif sel.fields and isinstance(value, list):
            value = [_select(dict(v), sel.fields, v.get("__typename", sel.name)) for v in value]
        out[sel.alias] = value
    return out


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


def _container_obj(s: ComputeSession, slots: str, changed: str | None) -> dict[str, Any]:
    """The session's one container (``ComputeContainer``): its main kernel."""
    return {
        "__typename": "ComputeContainer",
        "id": s.kernel_id,
        "cluster_role": "main",
        "cluster_idx": 1,
        "cluster_hostname": "main1",
        "session_id": s.id,
        "image": s.image,
        "registry": "local",
        "status": s.status,
        "status_info": s.status_info or "",
        "status_data": "{}",
        "status_changed": changed,
        "agent": None,
        "container_id": None,
        "resource_opts": "{}",
        "occupied_slots": slots if s.alive else "{}",
        "preopen_ports": [],
        "live_stat": None,
        "last_stat": None,
    }


def _session_obj(app: web.Application, s: ComputeSession) -> dict[str, Any]:
    kp = app[KEYPAIRS].get(s.access_key)
    slots = json.dumps(s.resources)
    changed = _iso(max(s.status_history.values(), default=s.created_at))
    container = _container_obj(s, slots, changed)
    return {
        "__typename": "ComputeSession",
        "id": s.id,
        "session_id": s.id,
        "main_kernel_id": s.kernel_id,
        "name": s.name,
        "priority": 10,
        "image": s.image,
        "architecture": "x86_64",
        "type": s.type.upper(),
        "status": s.status,
        "status_info": s.status_info,
        "status_data": None,
        "status_changed": changed,
        "status_history": json.dumps({k: _iso(v) for k, v in s.status_history.items()}),
        "result": s.result,
        "tag": s.tag,
        "created_at": _iso(s.created_at),
        "terminated_at": _iso(s.terminated_at),
        "starts_at": None,
        "startup_command": s.startup_command,
        "occupied_slots": slots if s.alive else "{}",
        "occupying_slots": slots if s.alive else "{}",
        "requested_slots": slots,
        "resource_opts": "{}",
        "idle_checks": json.dumps({
            "session_lifetime": {
                "remaining": None, "remaining_time_type": "expire_after", "extra": None,
            }
        }),
        "domain_name": s.domain,
        "group_name": s.group,
        "group_id": s.group,
        "access_key": s.access_key,
        "user_email": kp.user_email if kp else None,
        "user_id": kp.user_id if kp else None,
        "full_name": "",
        "scaling_group": "default",
        "service_ports": json.dumps(_service_ports(app, s)),
        "mounts": [m for _, m in s.mounts],
        "vfolder_mounts": [],
        "num_queries": s.num_queries,
        "cluster_size": 1,
        "cluster_mode": "single-node",
        "agent_ids": [],
        "commit_status": "ready",
        "inference_metrics": None,
        "containers": [container],
        "dependencies": [],
    }


def _statuses(request: web.Request, raw: Any) -> set[str]:
    names = {x.strip() for x in str(raw or "").split(",") if x.strip()}
    known = STATUSES if request.app[CONFIG].features.has("statuses_26") else OLD_STATUSES
    for name in sorted(names):
        if name not in known:
            raise GqlError(f"'{name}'")
    return names


def _page(args: dict[str, Any]) -> tuple[int, int]:
    offset, limit = int(args.get("offset") or 0), int(args.get("limit") or 20)
    if offset < 0 or limit < 1:
        raise GqlError("limit and offset must be positive")
    return offset, limit


def _compute_session_list(request: web.Request, args: dict[str, Any]) -> dict[str, Any]:
    statuses = _statuses(request, args.get("status"))
    owner = args.get("access_key") or request[ACCESS_KEY]
    pool = [
        s
        for s in request.app[REGISTRY].sessions.values()
        if s.access_key == owner and (not statuses or s.status in statuses)
    ]
    pool.sort(key=lambda s: s.created_at, reverse=args.get("order") != "created_at")
    offset, limit = _page(args)
    items = [_session_obj(request.app, s) for s in pool[offset : offset + limit]]
    return {"__typename": "ComputeSessionList", "items": items, "total_count": len(pool)}


def _compute_session(request: web.Request, args: dict[str, Any]) -> dict[str, Any] | None:
    try:
        sid = str(uuid.UUID(str(args.get("id"))))
    except ValueError:
        raise GqlError(f"Variable '$id' got invalid value {args.get('id')!r}.") from None
    s = request.app[REGISTRY].sessions.get(sid)
    if s is None or s.access_key != request[ACCESS_KEY]:
        return None
    return _session_obj(request.app, s)


def _keypair_obj(request: web.Request, kp: Keypair) -> dict[str, Any]:
    live = request.app[REGISTRY].live(kp.access_key)
    return {
        "__typename": "KeyPair",
        "user_id": kp.user_email,
        "access_key": kp.access_key,
        "secret_key": kp.secret_key,
        "is_active": True,
        "is_admin": kp.role in ("admin", "superadmin"),
        "resource_policy": "default",
        "rate_limit": kp.rate_limit,
        "num_queries": sum(s.num_queries for s in request.app[REGISTRY].sessions.values()),
        "concurrency_used": len(live),
        "concurrency_limit": 0,
        "user": kp.user_id,
        "created_at": None,
        "last_used": _iso(time.time()),
        "ssh_public_key": None,
    }


def _keypair(request: web.Request, args: dict[str, Any]) -> dict[str, Any] | None:
    kp = request.app[KEYPAIRS].get(str(args.get("access_key") or request[ACCESS_KEY]))
    return None if kp is None else _keypair_obj(request, kp)


def _user(request: web.Request, args: dict[str, Any]) -> dict[str, Any]:
    kp = request.app[KEYPAIRS][request[ACCESS_KEY]]
    return {
        "__typename": "User",
        "email": kp.user_email,
        "username": kp.user_email.split("@")[0],
        "role": kp.role,
        "domain_name": "default",
        "id": kp.user_id,
        "uuid": kp.user_id,
        "full_name": "",
        "status": "active",
        "is_active": True,
    }


def _vfolder_list(request: web.Request, args: dict[str, Any]) -> dict[str, Any]:
    from ..storage import FOLDER_STORE  # the folders package imports nothing from here

    items: list[dict[str, Any]] = []
    if FOLDER_STORE in request.app:
        store = request.app[FOLDER_STORE]
        store.load()
        kp = request.app[KEYPAIRS][request[ACCESS_KEY]]
        shared = store.shared_with(kp.user_email)
        # Like 26.9.6, trashed folders are listed too (status delete-pending).
        folders = [f for f in store.folders.values() if f.owner == kp.access_key or f.id in shared]
        folders.sort(key=lambda f: f.created_at, reverse=True)
        for f in folders:
            own = f.owner == kp.access_key
            items.append({
                "__typename": "VirtualFolder",
                "id": str(uuid.UUID(f.id)),
                "host": f.host,
                "quota_scope_id": f"user:{f.user}",
                "name": f.name,
                "user": f.user,
                "user_email": f.creator,
                "group": f.group,
                "group_name": None,
                "creator": f.creator,
                "unmanaged_path": None,
                "usage_mode": f.usage_mode,
                "permission": f.permission if own else shared.get(f.id, "ro"),
                "ownership_type": "group" if f.group else "user",
                "max_files": 0,
                "max_size": None,
                "created_at": datetime.fromisoformat(f.created_at).isoformat(),
                "last_used": None,
                "num_files": 0,
                "cur_size": 0,
                "cloneable": f.cloneable,
                "status": f.status,
            })
    offset, limit = _page(args)
    return {
        "__typename": "VirtualFolderList",
        "items": items[offset : offset + limit],
        "total_count": len(items),
    }


_ROOTS: dict[str, Callable[[web.Request, dict[str, Any]], Any]] = {
    "compute_session_list": _compute_session_list,
    "compute_session": _compute_session,
    "keypair": _keypair,
    "user": _user,
    "vfolder_list": _vfolder_list,
}


def execute(request: web.Request, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """Run ``query``; returns the ``data`` object or raises :class:`GqlError`."""
    data: dict[str, Any] = {}
    for sel in parse(query, variables):
        resolver = _ROOTS.get(sel.name)
        if resolver is None:
            raise GqlError(f"Cannot query field '{sel.name}' on type 'Query'.")
        value = resolver(request, sel.args)
        if isinstance(value, dict) and sel.fields:
            value = _select(value, sel.fields, value.pop("__typename", sel.name))
        data[sel.alias] = value
    return data


async def gql_handler(request: web.Request) -> web.Response:
    """``/admin/gql`` (standard ``{"data", "errors"}``, errors with HTTP 200 as on 26.9.6) and
    ``/admin/graphql`` (the bare data object; errors as a 400 problem)."""
    body = await read_json(request)
    if not isinstance(body, dict):
        body = {}
    standard = request.path.endswith("/gql")
    try:
        data = execute(request, str(body.get("query") or ""), dict(body.get("variables") or {}))
    except (GqlError, ValueError, TypeError) as e:
        errors = [{"message": str(e)}]
    else:
        return web.json_response({"data": data, "errors": None} if standard else data)
    if standard:
        return web.json_response({"data": None, "errors": errors})
    raise Problem(400, "graphql-error", "GraphQL-generated error.", data=errors)
