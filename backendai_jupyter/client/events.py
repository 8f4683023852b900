"""Server-sent event streams (``client.events``): session lifecycle and background tasks.

Each stream is an async generator of :class:`~._sse.ServerSentEvent`. A dropped connection is
re-opened after the server's ``retry`` delay (``Last-Event-ID`` is sent when the stream carried
ids); an error answer is raised, not retried, except 502/503/504 (a manager restarting);
``server_close`` ends the stream.

Reconnecting never duplicates: a stream that is re-opened (a manager restart, a cut connection, a
502/503/504) may replay what was already delivered — a finished background task answers its
final event again, a progress stream repeats the last progress — so after a reconnect an event
identical to one already delivered (same name, id and data; :class:`RecentEvents`) is dropped.

``retry`` units: the SSE spec says milliseconds, but Backend.AI's managers send small numbers
meant as seconds (``retry: 5`` on background-task events) and the official client sleeps that
many seconds. :func:`retry_delay` therefore reads values up to 300 as seconds and larger ones as
milliseconds, and caps the delay at :data:`MAX_RETRY_DELAY`.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._exceptions import APIError, ClientError, ConfigError
from ._sse import ServerSentEvent, SSEDecoder
from .outages import outage_reason

if TYPE_CHECKING:
    from ._core import ClientCore

__all__ = ["DEFAULT_RETRY_DELAY", "MAX_RETRY_DELAY", "Events", "RecentEvents", "retry_delay"]

DEFAULT_RETRY_DELAY = 5.0
MAX_RETRY_DELAY = 30.0
_SECONDS_THRESHOLD = 300


def retry_delay(value: int | None, default: float = DEFAULT_RETRY_DELAY) -> float:
    """The reconnection delay in seconds for an SSE ``retry`` value (see the module docstring)."""
    if value is None or value < 0:
        return default
    seconds = float(value) if value <= _SECONDS_THRESHOLD else value / 1000.0
    return max(0.1, min(seconds, MAX_RETRY_DELAY))


class RecentEvents:
    """The last ``size`` delivered events, to recognise a replay after a reconnect. Pure."""

    def __init__(self, size: int = 64) -> None:
        self._keys: deque[tuple[str, str | None, str]] = deque(maxlen=size)

    def seen(self, event: ServerSentEvent) -> bool:
        return (event.event, event.id, event.data) in self._keys

    def add(self, event: ServerSentEvent) -> None:
        self._keys.append((event.event, event.id, event.data))


def _session_matches(event: ServerSentEvent, session_id: str) -> bool:
    """False only for an event that names another session's id."""
    try:
        data = json.loads(event.data) if event.data else None
    except ValueError:
        return True
    if not isinstance(data, dict):
        return True
    other = data.get("sessionId", data.get("session_id"))
    if other is None or other == "":
        return True
    return str(other).replace("-", "").lower() == session_id.replace("-", "").lower()


class Events:
    """``client.events``: SSE streams under ``/events``."""

    def __init__(self, client: ClientCore) -> None:
        self._client = client

    async def session(
        self,
        *,
        session_name: str | None = None,
        session_id: str | None = None,
        group: str | None = None,
        scope: str = "*",
        owner_access_key: str | None = None,
        max_reconnects: int = 10,
    ) -> AsyncIterator[ServerSentEvent]:
        """Lifecycle events of one session (or of all the caller's sessions if none is named).

        Events look like ``session_enqueued``, ``session_scheduled``, ``kernel_preparing``,
        ``kernel_started``, ``session_started``, ``session_terminated`` (22.03+; ``kernel_*``
        only on 20.03); ``data`` is JSON with ``sessionName``, ``sessionId``, ``reason``, ...

        26.x managers accept ``sessionId`` but do not filter on it, so events of other sessions
        are dropped here by their ``sessionId``.
        """
        await self._client.connect()
        params: dict[str, Any]
        if self._client.features.events_by_session_id:
            params = {"scope": scope}
            if session_id is not None:
                params["sessionId"] = session_id
            if session_name is not None:
                params["sessionName"] = session_name
            if owner_access_key is not None:
                params["ownerAccessKey"] = owner_access_key
            if group is not None:
                params["groupName"] = group
        else:
            if session_name is None and session_id is not None:
                raise ConfigError("API v5 managers filter session events by name only")
            params = {"name": session_name or "*", "group": group or "*"}
            if owner_access_key is not None:
                params["ownerAccessKey"] = owner_access_key
        keep: Callable[[ServerSentEvent], bool] | None = None
        if session_id is not None:
            sid = session_id

            def keep(ev: ServerSentEvent) -> bool:
                return _session_matches(ev, sid)

        async for event in self._stream("/events/session", params, max_reconnects, keep):
            yield event

    async def background_task(
        self, task_id: str, *, max_reconnects: int = 10
    ) -> AsyncIterator[ServerSentEvent]:
        """Progress of a background task: ``bgtask_updated`` ... ``bgtask_done``/``_failed``/
        ``_cancelled`` (``task_*`` on 20.03). Ends when the server sends ``server_close``."""
        await self._client.connect()
        async for event in self._stream(
            "/events/background-task", {"taskId": str(task_id)}, max_reconnects, None
        ):
            yield event

    async def _stream(
        self,
        path: str,
        params: Mapping[str, Any],
        max_reconnects: int,
        keep: Callable[[ServerSentEvent], bool] | None,
    ) -> AsyncIterator[ServerSentEvent]:
        decoder = SSEDecoder()
        failures = 0
        recent = RecentEvents()
        reconnected = False
        while True:
            headers: dict[str, str] = {}
            if decoder.last_event_id:
                headers["Last-Event-ID"] = decoder.last_event_id
            reason = "the server closed the stream"
            try:
                async with self._client.http.stream(
                    "GET",
                    path,
                    params=params,
                    headers=headers or None,
                    sign_as="application/octet-stream",
                ) as resp:
                    async for chunk in resp.iter_any():
                        for event in decoder.feed(chunk):
                            failures = 0
                            if event.event == "server_close":
                                return
                            if keep is not None and not keep(event):
                                continue
                            if reconnected and recent.seen(event):
                                continue  # replayed after the reconnect: already delivered
                            recent.add(event)
                            yield event
            except ClientError as e:
                reason = str(e)
            except APIError as e:  # an answer: raised, unless the manager is restarting
                if outage_reason(e) is None:
                    raise
                reason = str(e)
            decoder.flush()
            failures += 1
            if failures > max_reconnects:
                raise ClientError(
                    f"{path}: gave up after {max_reconnects} reconnects ({reason})"
                )
            reconnected = True
            await asyncio.sleep(retry_delay(decoder.retry))
