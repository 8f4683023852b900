"""What the sub-APIs (``client.sessions``, ``client.folders``, ...) need from the client.

:class:`~._client.Client` builds the sub-APIs and hands itself to them; they see it through these
narrow protocols, so that no sub-API module imports ``_client`` (which imports them all) and the
package has no import cycle, type-only imports included.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

from ._config import ClientConfig
from ._http import HTTPTransport, WebSocket
from ._versioning import Features

__all__ = ["ClientCore", "ExecutionClient", "FolderIndex", "RunSessions", "WarmSocketPool"]


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


class ExecutionClient(ClientCore, Protocol):
    """The client as a run sees it: the connection plus its ``sessions``."""

    @property
    def sessions(self) -> RunSessions: ...


class FolderIndex(Protocol):
    """What the transfers ask of ``client.folders``: folder keys, listings and ``mkdir``."""

    async def _key(self, name: str) -> str: ...

    async def mkdir(
        self, name: str, path: str | Sequence[str], parents: bool = False, exist_ok: bool = False
    ) -> Any: ...

    async def list_files(self, name: str, path: str = "") -> list[dict[str, Any]]: ...
