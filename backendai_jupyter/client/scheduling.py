"""Asking the server what a request can get, before and while a session is scheduled.

:func:`fetch_capacity` gathers the server's own numbers (see :mod:`.capacity`) as a plain user;
:func:`precheck` refuses a request that can never run before the session is created;
:func:`watch_pending` runs beside a blocking ``POST /session`` and, while the session is
``PENDING``, reports why it waits and destroys it when it turns out it can never run.

What each server shows a plain user (checked on the real clusters):

* 26.9.6: ``check-presets``, ``/config/resource-slots`` and ``accessible_scaling_groups``
  (per-agent capacity, quantum). A PENDING session's ``statusInfo`` stays ``"None"``; the
  scheduler's reason ("no agents passed the 'resource' filter …") is only in the scheduling
  history and the ``session_pending_queue``, both super-admin only. So the reason is worked out
  here from what is free and from the caller's own sessions queued before this one.
* 24.03: ``check-presets`` and ``/config/resource-slots``; no per-agent capacity for users, so
  only the slot types and the limits are checked before creation. A PENDING session does carry
  the scheduler's last message (``statusData.scheduler.msg``, a code in ``statusInfo``), which
  the wait shows (:func:`.capacity.scheduler_words`).
* Both: the queue itself is not visible to a user; "N sessions ahead" counts the caller's own
  sessions queued before this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ._exceptions import BackendAIError, ClientError, ResourceRefused
from .capacity import (
    Capacity,
    Refusal,
    accelerator_slots,
    parallel_fit,
    parse_slot_map,
    refusal,
    request_amounts,
    scheduler_words,
    wait_reason,
)

if TYPE_CHECKING:
    from ._core import SchedulingClient as Client

__all__ = [
    "default_parallel",
    "fetch_capacity",
    "group_infos",
    "pending_reason",
    "pick_group",
    "post_session",
    "precheck",
    "raise_refusal",
    "watch_pending",
    "with_watch",
]

log = logging.getLogger(__name__)

_GROUPS_QUERY = "query { user { groups { id name } } }"
_RG_QUERY = (
    "query($pid: UUID!) { accessible_scaling_groups(project_id: $pid) {"
    " name accelerator_quantum_size resource_allocation_limit_for_sessions } }"
)


async def group_infos(client: Client) -> list[Mapping[str, Any]]:
    """``accessible_scaling_groups`` entries for the config's project (26.x); ``[]`` elsewhere."""
    await client.connect()
    if not client.features.has("gql_accessible_scaling_groups"):
        return []
    try:
        data = await client.gql(_GROUPS_QUERY)
        groups = ((data or {}).get("user") or {}).get("groups") or []
        pid = next(
            (g["id"] for g in groups if isinstance(g, Mapping)
             and g.get("name") == client.config.group and g.get("id")),
            None,
        )
        if pid is None:
            return []
        answer = await client.gql(_RG_QUERY, {"pid": str(pid)})
    except BackendAIError as e:  # 24.03 and the local endpoint do not have this query
        log.debug("no per-agent capacity: %s", e)
        return []
    items = (answer or {}).get("accessible_scaling_groups") or []
    return [i for i in items if isinstance(i, Mapping)]


def pick_group(infos: list[Mapping[str, Any]], name: str | None) -> Mapping[str, Any] | None:
    """The named group's entry; without a name, the largest of each slot over all groups (the
    manager may place the session in any of them)."""
    if name:
        return next((i for i in infos if i.get("name") == name), None)
    if not infos:
        return None
    most: dict[str, Decimal] = {}
    quanta = [i.get("accelerator_quantum_size") for i in infos]
    for info in infos:
        per_agent = parse_slot_map(info.get("resource_allocation_limit_for_sessions"))
        for slot, value in per_agent.items():
            most[slot] = max(most.get(slot, value), value)
    return {
        "accelerator_quantum_size": next((q for q in quanta if q), None),
        "resource_allocation_limit_for_sessions": {k: str(v) for k, v in most.items()},
    }


async def fetch_capacity(client: Client, scaling_group: str | None = None) -> Capacity:
    """The server's view of what the caller may get (raises :class:`BackendAIError`)."""
    await client.connect()
    slots, check, infos = await asyncio.gather(
        client.resources.resource_slots(),
        client.resources.check_presets(scaling_group=scaling_group),
        group_infos(client),
    )
    return Capacity.build(slots, check, pick_group(infos, scaling_group), scaling_group)


async def default_parallel(
    client: Client,
    resources: Mapping[str, Any],
    cases: int,
    fallback: int,
    scaling_group: str | None = None,
) -> int:
    """Cases to run at once when the user did not say: as many as the free GPU capacity holds
    when the cases ask for a GPU (:func:`.capacity.parallel_fit`), else ``fallback``."""
    request = request_amounts(resources)
    if not accelerator_slots(request):
        return fallback
    try:
        cap = await fetch_capacity(client, scaling_group)
    except BackendAIError as e:
        log.debug("no capacity for --max-parallel: %s", e)
        return fallback
    return parallel_fit(request, cap, cases)


def raise_refusal(found: Refusal) -> None:
    raise ResourceRefused(found.message(), slot=found.slot, asked=found.asked,
                          possible=found.possible)


async def precheck(
    client: Client, request: Mapping[str, Decimal], scaling_group: str | None = None
) -> Capacity | None:
    """Raise :class:`ResourceRefused` when ``request`` can never run; the capacity seen, or
    ``None`` when the server would not say (the request then goes to the manager as is)."""
    try:
        cap = await fetch_capacity(client, scaling_group)
    except BackendAIError as e:
        log.debug("resource pre-check skipped: %s", e)
        return None
    found = refusal(request, cap)
    if found is not None:
        raise_refusal(found)
    return cap


async def _ahead(client: Client, name: str, created_at: str) -> int:
    """The caller's own sessions queued before ``name`` (all of the queue a user can see)."""
    try:
        pending = await client.sessions.list(status="PENDING")
    except BackendAIError:
        return 0
    return sum(1 for s in pending if s.name != name and s.created_at and s.created_at < created_at)


async def pending_reason(
    client: Client,
    name: str,
    request: Mapping[str, Decimal],
    scaling_group: str | None = None,
) -> str | None:
    """Why ``name`` waits, in words, or ``None`` when it is not (or not yet) PENDING.

    Raises :class:`ResourceRefused` after destroying the session when the request turns out
    never to fit (capacity shrank, limits changed).
    """
    try:
        rec = await client.sessions.info(name)
    except BackendAIError as e:  # not created yet, or the manager is busy: ask again later
        log.debug("pending watch: %s", e)
        return None
    if rec.status.upper() != "PENDING":
        return None
    try:
        cap = await fetch_capacity(client, scaling_group)
    except BackendAIError as e:
        log.debug("pending watch: no capacity: %s", e)
        return "waiting for the scheduler"
    found = refusal(request, cap)
    if found is not None:
        with contextlib.suppress(BackendAIError):
            await client.sessions.destroy(name, forced=True)
        raise_refusal(found)
    ahead = await _ahead(client, name, rec.created_at)
    said = scheduler_words(rec.status_info, rec.get("statusData") or rec.get("status_data"))
    return wait_reason(request, cap, ahead, said)


async def watch_pending(
    client: Client,
    name: str,
    request: Mapping[str, Decimal],
    on_wait: Callable[[str], None],
    *,
    scaling_group: str | None = None,
    interval: float = 3.0,
    seen_pending: list[bool] | None = None,
) -> None:
    """While ``name`` is PENDING, tell ``on_wait`` why (:func:`pending_reason`), every
    ``interval`` seconds, until cancelled (the caller's create returned).

    ``seen_pending[0]`` is set once the session was seen queued, so that a caller interrupted
    while waiting knows the session exists and must be destroyed.
    """
    t0 = time.monotonic()
    while True:
        await asyncio.sleep(interval)
        reason = await pending_reason(client, name, request, scaling_group)
        if reason is None:
            continue
        if seen_pending is not None:
            seen_pending[:] = [True]
        on_wait(f"{reason} ({time.monotonic() - t0:.0f} s)")


async def with_watch(
    post: Awaitable[Any],
    watch: Callable[[list[bool]], Coroutine[Any, Any, None]],
    destroy: Callable[[], Awaitable[Any]],
) -> Any:
    """Await ``post`` while ``watch`` reports the wait; the watch's refusal wins. A cancelled
    wait, or a request whose connection failed (the server may have closed it while the
    session queued), destroys a session the watch saw queued: the caller gets no session to
    destroy itself, and a queued session nobody knows of would start later and hold resources."""
    seen: list[bool] = []
    posting = asyncio.ensure_future(post)
    watching = asyncio.ensure_future(watch(seen))

    async def destroy_seen() -> None:
        if seen:
            with contextlib.suppress(BackendAIError, asyncio.TimeoutError):
                await asyncio.shield(asyncio.wait_for(destroy(), 30))

    try:
        await asyncio.wait({posting, watching}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        posting.cancel()
        watching.cancel()
        await destroy_seen()
        raise
    if posting.done():
        watching.cancel()
        with contextlib.suppress(BaseException):
            await watching
        if not posting.cancelled() and isinstance(posting.exception(), ClientError):
            await destroy_seen()
        return posting.result()
    posting.cancel()  # the watch refused (and destroyed) the session
    with contextlib.suppress(BaseException):
        await posting
    return watching.result()


async def post_session(
    client: Client,
    body: Mapping[str, Any],
    read_timeout: float | None,
    precheck_first: bool,
    on_wait: Callable[[str], None] | None,
) -> Any:
    """``POST /session`` with ``body``, which blocks until the session runs.

    ``precheck_first``: a request that can never run raises :class:`ResourceRefused` before
    anything is created. ``on_wait`` is told every few seconds, while the session is PENDING,
    why it waits; a session seen queued is destroyed when the wait is cancelled.
    """
    config = body.get("config")
    config = config if isinstance(config, Mapping) else {}
    request = request_amounts(config.get("resources") or {})
    group = config.get("scalingGroup")
    scaling_group = str(group) if group else None
    name = str(body.get("name"))
    if precheck_first and request:
        await precheck(client, request, scaling_group)
    post = client.http.json("POST", "/session", json=dict(body), read_timeout=read_timeout)
    if on_wait is None:
        return await post
    report = on_wait

    def watch(seen: list[bool]) -> Coroutine[Any, Any, None]:
        return watch_pending(
            client, name, request, report, scaling_group=scaling_group, seen_pending=seen
        )

    return await with_watch(post, watch, lambda: client.sessions.destroy(name, forced=True))
