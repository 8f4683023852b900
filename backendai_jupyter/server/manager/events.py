"""Server-sent events: session lifecycle (``/events/session``) and background tasks.

Lifecycle code publishes the 26.x event names (as observed on a 26.9.6 manager: ``session_pending``,
``session_scheduled``, ``session_preparing``, ``session_prepared``, ``kernel_preparing``,
``kernel_creating``, ``kernel_started``, ``session_creating``, ``session_started``, ...). When the
server emulates an older API version the stream renames or drops them the way that manager
generation did (protocol.md §7.1): 22.03-era names for v6–v8, ``kernel_*`` names with the small
20.03 payload for v5.

Bytes on the wire come from the client's :func:`encode_event`, the same encoder the tests decode
against, so the framing matches ``aiohttp_sse`` exactly (CRLF lines, ``: ping`` every 15 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ...client._sse import encode_event
from ...client._versioning import Features
from .auth import ACCESS_KEY
from .errors import Problem
from .state import CONFIG, REGISTRY, ComputeSession, session_not_found

__all__ = ["EVENTS", "BgTask", "EventBus", "publish_session_event"]

PING_INTERVAL = 15.0
_SESSION_DATA_KEYS = ("reason", "sessionName", "ownerAccessKey", "sessionId", "exitCode")

# 26.x name → 22.03–25.x name (None: that generation had no such event).
_V6_NAMES: dict[str, str | None] = {
    "session_pending": "session_enqueued",
    "session_preparing": None,
    "session_prepared": None,
    "session_creating": None,
    "session_terminating": None,
}
# 26.x name → 20.03 name; everything not listed is dropped.
_V5_NAMES: dict[str, str] = {
    "session_pending": "kernel_enqueued",
    "kernel_preparing": "kernel_preparing",
    "kernel_creating": "kernel_creating",
    "kernel_started": "kernel_started",
    "kernel_terminating": "kernel_terminating",
    "kernel_terminated": "kernel_terminated",
    "session_cancelled": "kernel_cancelled",
    "session_success": "kernel_success",
    "session_failure": "kernel_failure",
}


@dataclass
class Event:
    name: str
    data: dict[str, Any]
    session: ComputeSession | None = None


@dataclass
class BgTask:
    """A background task as ``/events/background-task`` reports it."""

    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "started"  # started → done | failed | cancelled
    current_progress: float = 0
    total_progress: float = 0
    message: str = ""

    def as_data(self) -> dict[str, Any]:
        return {
            "task_id": self.id,
            "status": self.status,
            "current_progress": self.current_progress,
            "total_progress": self.total_progress,
            "message": self.message,
        }


class EventBus:
    """Fan-out of events to every open SSE stream (one queue per subscriber)."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self.bgtasks: dict[str, BgTask] = {}

    def subscribe(self) -> asyncio.Queue[Event | None]:
        q: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Event | None]) -> None:
        self._subscribers.discard(q)

    def publish(self, event: Event) -> None:
        for q in self._subscribers:
            q.put_nowait(event)

    def close_all(self) -> None:
        """Server shutdown: end every stream (``None`` is the sentinel)."""
        for q in self._subscribers:
            q.put_nowait(None)

    def new_bgtask(self) -> BgTask:
        task = BgTask()
        self.bgtasks[task.id] = task
        return task

    def update_bgtask(self, task: BgTask, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(task, key, value)
        self.publish(Event("bgtask", task.as_data()))


def publish_session_event(
    app: web.Application,
    name: str,
    sess: ComputeSession,
    reason: str = "",
    exit_code: int | None = None,
) -> None:
    data: dict[str, Any] = {
        "reason": reason,
        "sessionName": sess.name,
        "ownerAccessKey": sess.access_key,
        "sessionId": sess.id,
        "exitCode": exit_code,
    }
    if name.startswith("kernel_"):
        data.update(kernelId=sess.kernel_id, clusterRole="main", clusterIdx=1)
    app[EVENTS].publish(Event(name, data, sess))


def translate(
    name: str, data: dict[str, Any], features: Features
) -> tuple[str, dict[str, Any]] | None:
    """Rename/drop a 26.x event for an older emulated API version.

    26.9.6 itself never sends ``kernel_terminating`` and reports ``session_terminated`` with the
    reason ``triggered-by-scheduler`` (the user's reason is on ``session_terminating`` and
    ``kernel_terminated``), as observed on a real manager (cluster-facts §6).
    """
    if features.has("events_26"):
        if name == "kernel_terminating":
            return None
        if name == "session_terminated":
            return name, {**data, "reason": "triggered-by-scheduler"}
        return name, data
    if features.has("events_2009"):
        if name in _V6_NAMES:
            new = _V6_NAMES[name]
            return None if new is None else (new, data)
        return name, data
    old = _V5_NAMES.get(name)
    if old is None:
        return None
    return old, {k: data[k] for k in ("sessionName", "ownerAccessKey", "reason")}


async def _open_stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Connection": "keep-alive",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    return resp


async def session_events(request: web.Request) -> web.StreamResponse:
    """``GET /events/session`` filtered by name/id/owner/group/scope."""
    q = request.query
    ak = q.get("ownerAccessKey") or q.get("owner_access_key") or request[ACCESS_KEY]
    name = q.get("sessionName") or q.get("name") or "*"
    session_id = q.get("sessionId") or q.get("session_id")
    group = q.get("groupName") or q.get("group") or "*"
    scope = q.get("scope", "*")
    if scope not in ("*", "session", "kernel", "session,kernel", "kernel,session"):
        raise Problem(400, "invalid-api-params", "Missing or invalid API parameters.", "scope")
    registry = request.app[REGISTRY]
    wanted_id: str | None = None
    if session_id:
        wanted_id = registry.get(session_id, ak, allow_dead=True).id
    elif name != "*":
        found = registry.by_name(name, ak)
        if found is None:
            raise session_not_found()  # 26.9.6: 404 when the named session does not exist yet
        wanted_id = found.id
    features = request.app[CONFIG].features
    if name != "*" and not session_id and features.has("events_26"):
        scope = "session"  # 26.9.6: a sessionName-filtered stream carries no kernel_* events
    bus = request.app[EVENTS]
    queue = bus.subscribe()
    resp = await _open_stream(request)
    try:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), PING_INTERVAL)
            except asyncio.TimeoutError:
                await resp.write(b": ping\r\n\r\n")
                continue
            if event is None:
                break
            sess = event.session
            if sess is None or sess.access_key != ak:
                continue
            if wanted_id is not None and sess.id != wanted_id:
                continue
            if group != "*" and sess.group != group:
                continue
            kind = "kernel" if event.name.startswith("kernel_") else "session"
            if scope != "*" and kind not in scope.split(","):
                continue
            out = translate(event.name, event.data, features)
            if out is not None:
                await resp.write(encode_event(event=out[0], data=json.dumps(out[1])))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        bus.unsubscribe(queue)
    return resp


async def bgtask_events(request: web.Request) -> web.StreamResponse:
    """``GET /events/background-task?task_id=...`` (alias ``taskId``)."""
    task_id = request.query.get("task_id") or request.query.get("taskId") or ""
    bus = request.app[EVENTS]
    task = bus.bgtasks.get(task_id)
    if task is None:
        raise Problem(404, "generic-not-found", "Not found.", "No such background task.")
    prefix = "bgtask_" if request.app[CONFIG].features.has("events_2009") else "task_"
    queue = bus.subscribe()
    resp = await _open_stream(request)
    try:
        while task.status == "started":
            with contextlib.suppress(asyncio.TimeoutError):
                event = await asyncio.wait_for(queue.get(), PING_INTERVAL)
                if event is None:
                    return resp
                if event.name == "bgtask" and event.data.get("task_id") == task.id:
                    if task.status == "started":
                        data = json.dumps(task.as_data())
                        await resp.write(encode_event(event=prefix + "updated", data=data, retry=5))
        final = prefix + task.status
        await resp.write(encode_event(event=final, data=json.dumps(task.as_data()), retry=5))
        await resp.write(encode_event(event="server_close", data="{}"))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        bus.unsubscribe(queue)
    return resp


EVENTS: web.AppKey[EventBus] = web.AppKey("bjup_events", EventBus)
