"""The :class:`Workspace`: one configuration, one client, one loop, one kernel session."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..client import Client, ClientConfig
from .cells import CellRunner
from .config import load_config, split_items
from .kernel_session import KernelSession
from .loop import BackgroundLoop, Inbox, get_loop
from .registry import Registry
from .settings import SessionSettings

__all__ = ["ConfigChange", "Workspace", "current"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ConfigChange:
    """What one ``%backendai config set`` changed, and whether a live session kept its old
    settings (it does: they apply to the next session)."""

    client: bool
    session: bool
    live_session: str | None

    def describe(self) -> str:
        what = " and ".join(
            w for w, changed in (("connection", self.client), ("session", self.session)) if changed
        )
        text = f"✓ Configuration updated ({what or 'nothing'})."
        if self.live_session:
            text += (
                f" The running kernel session {self.live_session} keeps its old settings; "
                "the next one uses the new ones (%backendai kernel stop ends it now)."
            )
        return text


class Workspace:
    """Everything one process shares with Backend.AI; see the package docstring.

    Thread-safe entry points: :meth:`run`, :meth:`submit`, :meth:`call`, the configuration
    methods. Client and session objects are used only on :attr:`loop`.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        loop: BackgroundLoop | None = None,
        notebook_key: str | None = None,
        registry: Registry | None = None,
    ) -> None:
        self._env = env
        self.loop = loop or get_loop()
        self._lock = threading.RLock()
        self.overrides: dict[str, str] = {}
        self.settings = SessionSettings.from_env(self._environ())
        self._config: ClientConfig | None = None
        self._client: Client | None = None
        self._retired: list[Client] = []
        self._client_lock: asyncio.Lock | None = None
        if notebook_key is None:
            notebook_key = self._environ().get("JPY_SESSION_NAME")
        self.kernel_session = KernelSession(
            lambda: self.settings, self.client, notebook_key=notebook_key, registry=registry
        )
        self.cells = CellRunner(self.kernel_session)
        """The proxy kernel's remote cells (:mod:`.cells`): one call per cell."""

    def _environ(self) -> Mapping[str, str]:
        return os.environ if self._env is None else self._env

    # -- the bridge ------------------------------------------------------------------------------

    def run(
        self, coro: Coroutine[Any, Any, T], timeout: float | None = None, *,
        inbox: Inbox[Any] | None = None,
    ) -> T:
        """Run ``coro`` on the workspace loop and wait (sync callers: magics, widgets, tests),
        handling what it posts to ``inbox`` in this thread meanwhile (:class:`.loop.Inbox`).

        ``KeyboardInterrupt`` cancels the work and waits for its clean-up before re-raising.
        Never call it on the loop's own thread (it raises instead of deadlocking).
        """
        return self.loop.run(coro, timeout, inbox=inbox)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the workspace loop; do not wait (widget callbacks)."""
        return self.loop.submit(coro)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the workspace loop from another event loop (the proxy kernel's),
        without blocking that loop. Cancelling the caller cancels the work."""
        return await asyncio.wrap_future(self.loop.submit(coro))

    # -- configuration ---------------------------------------------------------------------------

    def client_config(self) -> ClientConfig:
        """The current connection settings (may start the local endpoint: blocking, ~1 s)."""
        with self._lock:
            if self._config is None:
                self._config = load_config({**self._environ(), **self.overrides})
            return self._config

    def configure(self, items: Iterable[str]) -> ConfigChange:
        """``%backendai config set KEY=VALUE ...``: the one grammar for connection and session
        settings (:func:`.config.split_items`). Nothing changes unless every item is valid."""
        client_changes, session_changes = split_items(items)
        with self._lock:
            settings = self.settings.update(session_changes) if session_changes else self.settings
            overrides, config = self.overrides, self._config
            if client_changes:
                overrides = {**self.overrides, **client_changes}
                config = load_config({**self._environ(), **overrides})
            self.settings = settings
            if client_changes:
                self.overrides, self._config = overrides, config
                self._retire_client()
        live = self.kernel_session.snapshot.session_name
        return ConfigChange(bool(client_changes), bool(session_changes), live)

    def reset(self) -> None:
        """Forget every ``config set``/``login`` change; read ``BACKEND_*`` again."""
        with self._lock:
            self.overrides = {}
            self.settings = SessionSettings.from_env(self._environ())
            self._config = None
            self._retire_client()

    def describe(self) -> list[tuple[str, str]]:
        """``%backendai config``: connection settings (never the secret) and session settings."""
        rows = list(self.client_config().describe().items())
        rows += [(f"session.{k}", v) for k, v in self.kernel_session.settings.describe().items()]
        if (running := self.kernel_session.snapshot.session_name) is not None:
            rows.append(("session.running", f"{running} (kept settings)"))
        return rows

    def _retire_client(self) -> None:
        if self._client is not None:
            self._retired.append(self._client)
            self._client = None

    # -- on the loop -----------------------------------------------------------------------------

    async def client(self) -> Client:
        """The workspace's client (built on first use). Call on :attr:`loop`."""
        if self._client_lock is None:
            self._client_lock = asyncio.Lock()
        async with self._client_lock:
            await self._close_retired()
            with self._lock:
                client = self._client
            if client is None:
                # May start the embedded local endpoint (blocking): keep the loop free.
                config = await asyncio.to_thread(self.client_config)
                client = Client(config)
                with self._lock:
                    if self._client is None and self._config is config:
                        self._client = client
                    else:  # reconfigured meanwhile: use this one once, close it later
                        self._retired.append(client)
        return client

    async def _close_retired(self) -> None:
        keep = self.kernel_session.client if self.kernel_session.active else None
        with self._lock:
            done = [c for c in self._retired if c is not keep]
            self._retired = [c for c in self._retired if c is keep]
        for client in done:
            with contextlib.suppress(Exception):
                await client.close()

    async def stop_session(self) -> bool:
        """``%backendai kernel stop``: end the live kernel session; False if there was none."""
        if not self.kernel_session.active:
            return False
        await self.kernel_session.stop()
        await self._close_retired()
        return True

    async def aclose(self) -> None:
        """End of the process: destroy (or keep) the kernel session, close every client."""
        try:
            await self.kernel_session.close()
        finally:
            with self._lock:
                clients = [*self._retired, *([self._client] if self._client else [])]
                self._retired, self._client = [], None
            for client in clients:
                with contextlib.suppress(Exception):
                    await client.close()


_current: Workspace | None = None
_current_lock = threading.Lock()


def current() -> Workspace:
    """The process's workspace (made on first use from ``BACKEND_*``)."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Workspace()
        return _current
