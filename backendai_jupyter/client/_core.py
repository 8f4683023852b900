"""What the sub-APIs (``client.sessions``, ``client.folders``, ...) need from the client.

:class:`~._client.Client` builds the sub-APIs and hands itself to them; they see it through these
narrow protocols, so that no sub-API module imports ``_client`` (which imports them all) and the
package has no import cycle, type-only imports included.
"""

from __future__ import annotations

import builtins
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

from ._config import ClientConfig
from ._http import HTTPTransport, WebSocket
from ._models import SessionRecord
from ._versioning import Features

__all__ = [
    "CapacitySource",
    "ClientCore",
    "ExecutionClient",
    "FolderIndex",
    "QueueSessions",
    "RunSessions",
    "SchedulingClient",
    "WarmSocketPool",
]


class ClientCore(Protocol):
    """The connection every sub-API uses: configuration, transport, negotiated features."""

    @property
    def config(self) -> ClientConfig: ...

    @property
    def http(self) -> HTTPTransport: ...

    @property
    def features(self) -> Features: ...

    async def connect(self) -> ClientCore: ...

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> Any: ...


class WarmSocketPool(Protocol):
    """The pre-opened execute websockets (:class:`~.execution.WarmSockets`)."""

    def prepare(self, session: str) -> None: ...

    def finished(self, session: str, ws: WebSocket, reusable: bool) -> None: ...

    async def take(self, session: str) -> WebSocket | None: ...


class RunSessions(Protocol):
    """What a run (:class:`~.execution.Execution`) asks of ``client.sessions``."""

    @property
    def warm_sockets(self) -> WarmSocketPool: ...

    def track_drain(self, session: str, drain: Coroutine[Any, Any, None]) -> None: ...

    async def wait_drained(self, session: str) -> None: ...

    async def interrupt(self, session: str) -> None: ...

    async def probe(self, session: str, *, timeout: float = 10.0) -> bool: ...

    async def gone_reason(self, session: str) -> str | None: ...

    def flush_prefix(self, session: str) -> str | None: ...

    def note_background(self, session: str) -> None: ...

    async def stop_collector(self, session: str) -> None: ...


class ExecutionClient(ClientCore, Protocol):
    """The client as a run sees it: the connection plus its ``sessions``."""

    @property
    def sessions(self) -> RunSessions: ...


class CapacitySource(Protocol):
    """What the GPU pre-check asks of ``client.resources`` (:mod:`.scheduling`)."""

    async def resource_slots(self) -> dict[str, str]: ...

    async def check_presets(
        self, scaling_group: str | None = None, group: str | None = None
    ) -> dict[str, Any]: ...


class QueueSessions(RunSessions, Protocol):
    """What watching a queued session asks of ``client.sessions`` (:mod:`.scheduling`)."""

    async def info(self, session: str) -> SessionRecord: ...

    async def list(
        self, *, status: str | Sequence[str] | None = None, fields: Sequence[str] = ...
    ) -> builtins.list[SessionRecord]: ...

    async def destroy(
        self, session: str, *, forced: bool = False, recursive: bool = False
    ) -> dict[str, Any]: ...


class SchedulingClient(ExecutionClient, Protocol):
    """The client as session creation sees it: a run's view plus the capacity questions."""

    @property
    def resources(self) -> CapacitySource: ...

    @property
    def sessions(self) -> QueueSessions: ...


class FolderIndex(Protocol):
    """What the transfers ask of ``client.folders``: folder keys, listings and ``mkdir``."""

    async def _key(self, name: str) -> str: ...

    async def mkdir(
        self, name: str, path: str | Sequence[str], parents: bool = False, exist_ok: bool = False
    ) -> Any: ...

    async def list_files(self, name: str, path: str = "") -> list[dict[str, Any]]: ...
