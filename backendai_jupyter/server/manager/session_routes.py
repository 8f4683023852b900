"""``/session`` REST handlers and files inside a session (GraphQL: ``gql.py``).

Answers mirror a 26.9.6 manager (cluster-facts §1–§2: field names, the stringified slot maps in
``GET /session/{id}``, ``{"stats": ...}`` on destroy, 201 on create, 204 on interrupt). Where the
real manager is broken or removed a feature the local endpoint keeps the useful older behaviour:
``PATCH /session/{id}`` restarts the kernel (26.9.6 answers 501).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, MultipartWriter, web

from .. import storage as folders
from ..agent import safefs, services
from ..paths import path_problem
from . import userconfig
from .auth import ACCESS_KEY
from .errors import Problem, invalid_api_params, json_body
from .scheduler import SCHEDULER
from .session_params import CreateParams, check_name, parse_create
from .state import CONFIG, KEYPAIRS, REGISTRY, ComputeSession

__all__ = ["create", "destroy", "info"]

MAX_UPLOAD_PARTS = 20
MAX_UPLOAD_SIZE = 1024 * 1024


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


def _pick(d: dict[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if d.get(n) is not None:
            return d[n]
    return default


async def _body(request: web.Request) -> dict[str, Any]:
    return await json_body(request, query_if_empty=True)


def _session(request: web.Request, *, allow_dead: bool = False) -> ComputeSession:
    return request.app[REGISTRY].get(
        request.match_info["session_name"], request[ACCESS_KEY], allow_dead=allow_dead
    )


def _slots_repr(slots: dict[str, str]) -> str:
    # 26.9.6 sends str() of a dict of Decimals here, e.g. "{'cpu': Decimal('1.000000')}".
    return "{" + ", ".join(f"'{k}': Decimal('{float(v):.6f}')" for k, v in slots.items()) + "}"


# -- create -----------------------------------------------------------------------------------


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _from_template(tpl: dict[str, Any]) -> dict[str, Any]:
    """A stored template as create-request fields (anything malformed in it is dropped and then
    refused by the create-request check, never a crash)."""
    spec = _mapping(tpl.get("spec", tpl))
    kernel = _mapping(spec.get("kernel"))
    run = _mapping(kernel.get("run"))
    mounts = spec.get("mounts") or {}
    return {
        "image": kernel.get("image"),
        "type": spec.get("session_type") or spec.get("sessionType") or spec.get("type"),
        "startupCommand": run.get("startup_command") or run.get("startupCommand"),
        "bootstrap_script": run.get("bootstrap"),
        "config": {
            "environ": kernel.get("environ") or {},
            "resources": spec.get("resources") or {},
            "mounts": list(mounts) if isinstance(mounts, (dict, list)) else mounts,
            "mount_map": mounts if isinstance(mounts, dict) else {},
        },
    }


async def create(request: web.Request) -> web.Response:
    return await _create(request, await _body(request))


async def create_from_template(request: web.Request) -> web.Response:
    body = await _body(request)
    template_id = _pick(body, "template_id", "templateId")
    if not template_id:
        raise invalid_api_params("Input validation error", {"template_id": "is required"})
    if not isinstance(template_id, str):
        raise invalid_api_params("Input validation error", {"template_id": "must be a string"})
    overrides = body.get("config") or {}
    if not isinstance(overrides, dict):
        raise invalid_api_params("Input validation error", {"config": "must be a mapping"})
    base = _from_template(userconfig.get_template(request.app, template_id))
    config = {**base.pop("config"), **overrides}
    merged = {**base, **{k: v for k, v in body.items() if v is not None}, "config": config}
    return await _create(request, merged)


async def _create(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Every field is checked (``session_params``, the scheduler, the folders) before the
    session is registered or enqueued: a refused request leaves nothing behind."""
    app, ak = request.app, request[ACCESS_KEY]
    params = parse_create(body)
    name = params.name or f"pysdk-{uuid.uuid4().hex[:10]}"
    registry = app[REGISTRY]
    existing = registry.by_name(name, ak)
    if existing is not None:
        if not params.reuse_if_exists:
            raise Problem(
                400,
                "session-already-exists",
                "The session already exists but you requested not to reuse existing one.",
                data={"existingSessionId": existing.id},
            )
        return web.json_response(
            {
                "sessionId": existing.id,
                "sessionName": existing.name,
                "status": existing.status,
                "service_ports": services.service_ports(app, existing),
                "servicePorts": services.service_ports(app, existing),
                "created": False,
            },
            status=201,
        )
    resources = app[SCHEDULER].normalize(params.resources)
    resolved: list[tuple[Path, str]] = []
    if params.mounts:
        resolved = folders.mount_paths(app, params.mounts, params.mount_map)
    sid = str(uuid.uuid4())
    sess = ComputeSession(
        id=sid,
        name=name,
        access_key=ak,
        image=params.image,
        type=params.type,
        workdir=app[CONFIG].sessions_dir / sid,
        resources=resources,
        environ=params.environ,
        startup_command=params.startup_command,
        mounts=resolved,
        tag=params.tag,
        bootstrap_script=params.bootstrap_script,
        group=params.group,
        domain=params.domain,
    )
    services.register_session(app, sess, params.service_config)
    # -- side effects from here on ----------------------------------------------------------------
    registry.add(sess)
    sched = app[SCHEDULER]
    sched.enqueue(sess)
    status = "PENDING" if params.enqueue_only else await _wait_started(app, sess, params)
    return web.json_response(
        {
            "sessionId": sid,
            "sessionName": name,
            "status": status,
            "servicePorts": services.service_ports(app, sess),
            "created": True,
        },
        status=201,
    )


async def _wait_started(app: web.Application, sess: ComputeSession, params: CreateParams
                        ) -> str:
    """The create's answer status: maxWaitSeconds as on the manager (then TIMEOUT, the
    session stays queued); without it the manager would wait forever, here at most
    ``create_wait`` and then a clear 429 (the session leaves the queue)."""
    sched = app[SCHEDULER]
    wait = params.max_wait or app[CONFIG].create_wait
    if await sched.wait_started(sess, wait):
        await asyncio.sleep(0)
        return str(sess.status)
    if sess.status == "PENDING" and not params.max_wait:  # capacity stayed full
        await sched.terminate(sess, "capacity-full")
        raise Problem(
            429, "session-capacity-full", "Not enough capacity",
            f"the session did not start within {wait:g} s: the endpoint's capacity stayed full "
            "(destroy a session, ask for less, or create with enqueueOnly)",
        )
    return "TIMEOUT"


# -- per-session routes ---------------------------------------------------------------------


async def info(request: web.Request) -> web.Response:
    s = _session(request)
    kp = request.app[KEYPAIRS][s.access_key]
    slots = _slots_repr(s.resources)
    return web.json_response(
        {
            "age": int((time.time() - s.created_at) * 1000),
            "domainName": s.domain,
            "groupId": s.group,
            "userId": kp.user_id,
            "lang": s.image,
            "image": s.image,
            "architecture": "x86_64",
            "registry": "local",
            "tag": s.tag or "",
            "containerId": None,
            "occupiedSlots": slots,
            "occupyingSlots": slots,
            "requestedSlots": slots,
            "occupiedShares": "{}",
            "environ": str(s.environ),
            "resourceOpts": "{}",
            "status": s.status,
            "statusInfo": str(s.status_info),
            "statusData": None,
            "creationTime": _iso(s.created_at),
            "terminationTime": _iso(s.terminated_at),
            "numQueriesExecuted": s.num_queries,
            "lastStat": None,
            "idleChecks": {},
            "workdir": str(s.workdir),
            "servicePorts": services.service_ports(request.app, s),
        }
    )


async def destroy(request: web.Request) -> web.Response:
    s = _session(request, allow_dead=True)
    if not s.alive:
        return web.json_response({"stats": {}})
    await request.app[SCHEDULER].terminate(s, "user-requested")
    return web.json_response({"stats": {"status": "terminated"}})


async def restart(request: web.Request) -> web.Response:
    s = _session(request)
    if s.process is not None:
        s.set_status("RESTARTING")
        try:
            await s.process.restart()
        finally:
            s.set_status("RUNNING")
    return web.Response(status=204)


async def interrupt(request: web.Request) -> web.Response:
    s = _session(request)
    if s.process is not None:
        s.process.interrupt()
    return web.Response(status=204)


async def logs(request: web.Request) -> web.Response:
    s = _session(request, allow_dead=True)
    path = s.workdir.parent / f"{s.workdir.name}.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return web.json_response({"result": {"logs": text}})


async def match(request: web.Request) -> web.Response:
    ident = request.query.get("id", "").replace("-", "").lower()
    found = [
        {"id": s.id, "name": s.name, "status": s.status}
        for s in request.app[REGISTRY].live(request[ACCESS_KEY])
        if ident and (s.id.replace("-", "").startswith(ident) or s.name.startswith(ident))
    ]
    return web.json_response({"matches": found})


async def status_history(request: web.Request) -> web.Response:
    s = _session(request, allow_dead=True)
    return web.json_response({k: _iso(v) for k, v in s.status_history.items()})


async def rename(request: web.Request) -> web.Response:
    s = _session(request)
    new = check_name((await _body(request)).get("name") or request.query.get("name"))
    if request.app[REGISTRY].by_name(new, s.access_key) is not None:
        raise Problem(400, "session-already-exists", "The session already exists.")
    s.name = new
    return web.Response(status=204)


# -- files ------------------------------------------------------------------------------------


def _forbidden() -> Problem:
    return Problem(403, "generic-forbidden", "Forbidden operation.",
                   "Not allowed to access outside /home/work")


def _inside(rel: str) -> str:
    """A path as the user sees it (relative, or under /home/work) → relative to the workdir.
    Every access below is ``openat``-style from the workdir's descriptor (``safefs``): the
    session's symlinks are never followed, even one swapped in while the endpoint works."""
    problem = path_problem(rel)
    if problem is not None:
        raise invalid_api_params(problem)
    p = PurePosixPath(rel)
    if p.is_absolute():
        try:
            p = p.relative_to("/home/work")
        except ValueError:
            raise _forbidden() from None
    try:
        safefs.parts_of(p)
    except safefs.BeneathError:
        raise _forbidden() from None
    return str(p)


def _in_workdir(s: ComputeSession, rel: str, what: str, op: Any) -> Any:
    """``op(workdir fd, rel)`` with the workdir open; errors in words without host paths."""
    root = os.open(s.workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return op(root, rel)
    except safefs.BeneathError:
        raise _forbidden() from None
    except FileNotFoundError:
        raise Problem(404, "generic-not-found", "Not found.", f"no such file: {what}") from None
    except OSError as e:
        raise invalid_api_params(f"cannot access {what}: {e.strerror}") from None
    finally:
        os.close(root)


async def upload(request: web.Request) -> web.Response:
    s = _session(request)
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):
        raise invalid_api_params("multipart/form-data body expected") from None
    files: list[tuple[str, str, bytes]] = []
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.filename:
                continue
            if len(files) >= MAX_UPLOAD_PARTS:
                raise invalid_api_params("Too many files")
            # aiohttp's client percent-quotes "/" in multipart filenames (sub%2Fa.txt).
            name = unquote(part.filename)
            target = _inside(name)
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
                if len(data) >= MAX_UPLOAD_SIZE:
                    raise invalid_api_params("Too large file")
            files.append((target, name, bytes(data)))
    except (AssertionError, ValueError) as e:  # a broken multipart body
        raise invalid_api_params(f"malformed multipart body: {e}") from None
    # Every part was read and checked: only now is anything written.
    owner = s.process.sandbox.owner() if s.process and s.process.sandbox else None
    for target, name, content in files:
        _in_workdir(s, target, PurePosixPath(name).name,
                    lambda root, rel, c=content: safefs.write_beneath(root, rel, c, owner))
    return web.Response(status=204)


def _tar_of(s: ComputeSession, rel: str, name: str) -> bytes:
    return bytes(_in_workdir(s, rel, name, safefs.tar_beneath))


async def download(request: web.Request) -> web.Response:
    s = _session(request)
    files = request.query.getall("files", [])
    if not files and request.can_read_body:
        files = (await _body(request)).get("files") or []
    if (
        not isinstance(files, list)
        or not 1 <= len(files) <= 5
        or not all(isinstance(f, str) for f in files)
    ):
        raise invalid_api_params("Input validation error", {"files": "1 to 5 paths"})
    writer = MultipartWriter("mixed")
    for f in files:
        data = await asyncio.to_thread(_tar_of, s, _inside(str(f)), str(f))
        part = writer.append(data, {"Content-Type": "application/x-tar"})
        part.headers["Content-Encoding"] = "identity"
    return web.Response(body=writer)  # Content-Type: multipart/mixed; boundary=...


async def download_single(request: web.Request) -> web.Response:
    s = _session(request)
    name = request.query.get("file") or (await _body(request)).get("file")
    if not name or not isinstance(name, str):
        raise invalid_api_params("Input validation error", {"file": "is required"})
    data = await asyncio.to_thread(_tar_of, s, _inside(name), name)
    return web.Response(body=data, content_type="application/x-tar")


async def list_files(request: web.Request) -> web.Response:
    s = _session(request)
    rel = _inside((await _body(request)).get("path") or ".")
    entries, errors = [], ""
    try:
        listing = _in_workdir(s, rel, rel, lambda root, r: list(safefs.scandir_beneath(root, r)))
    except Problem as e:
        listing, errors = [], str(e.msg or e.title)
    for name, st in listing:
        entries.append(
            {
                "mode": stat.filemode(st.st_mode),
                "size": st.st_size,
                "ctime": st.st_ctime,
                "mtime": st.st_mtime,
                "atime": st.st_atime,
                "filename": name,
            }
        )
    abspath = "/home/work/" + ("" if rel == "." else rel)
    return web.json_response(
        {"files": json.dumps(entries), "errors": errors, "abspath": abspath.rstrip("/")}
    )