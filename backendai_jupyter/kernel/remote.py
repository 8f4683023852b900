"""The one Backend.AI compute session behind a proxy kernel, and the client that reaches it.

Lives on the kernel's own event loop. Creates the session lazily (or at kernel start), shows its
lifecycle progress, installs the rich channel (:mod:`.bootstrap`), finds a kept session again by
its stable name, watches lifecycle events for a termination reason, and destroys or keeps the
session at the end. The magics reach it as ``get_ipython().kernel.backendai``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from ..client import Client, ClientConfig, Execution, Output
from ..client._exceptions import APIError, BackendAIError, NotFoundError
from ..client.defaults import load_config
from ..display.outputs import Frame, FrameDecoder, read_ready
from .bootstrap import bootstrap_code, cell_header, helper_call
from .registry import Record, Registry
from .settings import SessionSettings, keep_name

__all__ = ["PROGRESS_WORDS", "RemoteSession", "SessionGone"]

log = logging.getLogger(__name__)

PROGRESS_WORDS = {
    "session_pending": "queued",
    "session_enqueued": "queued",
    "kernel_enqueued": "queued",
    "session_scheduled": "scheduled",
    "scheduling": "scheduling",
    "session_checking_precondition": "checking",
    "session_preparing": "preparing",
    "kernel_preparing": "preparing",
    "kernel_pulling": "pulling the image",
    "kernel_pull_progress": "pulling the image",
    "session_prepared": "prepared",
    "kernel_creating": "starting",
    "session_creating": "starting",
    "kernel_started": "started",
    "session_started": "started",
}
TERMINAL_EVENTS = {
    "session_terminating",
    "session_terminated",
    "kernel_terminating",
    "kernel_terminated",
    "session_cancelled",
    "kernel_cancelled",
    "session_failure",
    "kernel_failure",
}
_DEAD = {"TERMINATED", "TERMINATING", "CANCELLED", "ERROR"}


class SessionGone(BackendAIError):
    """The session died remotely (idle timeout, OOM, an administrator, ...)."""

    def __init__(self, name: str, reason: str | None) -> None:
        self.name = name
        self.reason = reason
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"The Backend.AI session {name!r} has ended{why}. Its variables are lost; "
            "run the cell again to start a new session."
        )


async def _config_from_env() -> ClientConfig:
    # May start the embedded local endpoint (blocking, about a second): keep the loop free.
    return await asyncio.to_thread(load_config)


class RemoteSession:
    """One kernel's compute session. Not thread-safe: use it from the kernel's loop."""

    def __init__(
        self,
        settings: SessionSettings,
        *,
        notebook_key: str | None = None,
        registry: Registry | None = None,
        config_factory: Callable[[], Any] = _config_from_env,
    ) -> None:
        self.settings = settings
        self.notebook_key = notebook_key
        self.registry = registry or Registry()
        self._config_factory = config_factory
        self.config: ClientConfig | None = None
        self.client: Client | None = None
        self.session_id: str | None = None
        self.session_name: str | None = None
        self.nonce: str | None = None
        self.remote_info: dict[str, Any] | None = None
        """The bootstrap's ``ready`` frame: remote versions and ``language_info``."""
        self.reattached = False
        self.terminated_reason: str | None = None
        self._watch: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[str] | None = None
        self._closed = False
        self._client_lock: asyncio.Lock | None = None
        self._sync_lock = threading.Lock()

    # -- client ---------------------------------------------------------------------------------

    async def get_client(self) -> Client:
        if self._client_lock is None:
            self._client_lock = asyncio.Lock()
        async with self._client_lock:  # kernel start and the first cell may race here
            if self.client is None:
                self.config = await self._config_factory()
                client = Client(self.config)
                try:
                    await client.connect()
                except BaseException:
                    await client.close()
                    raise
                self.client = client
        return self.client

    @property
    def rich(self) -> bool:
        return self.nonce is not None

    @property
    def active(self) -> bool:
        return self.session_id is not None

    def _wanted_name(self, access_key: str) -> str:
        if self.settings.name:
            return self.settings.name
        if self.settings.keep:
            return keep_name(self.notebook_key or os.getcwd(), access_key)
        return f"bjk-{secrets.token_hex(6)}"

    # -- lifecycle ------------------------------------------------------------------------------

    async def cleanup_orphans(self) -> list[str]:
        """Destroy sessions whose kernels crashed before cleaning up (see :mod:`.registry`)."""
        client = await self.get_client()
        assert self.config is not None
        done: list[str] = []
        for rec in self.registry.orphans(str(self.config.endpoint), self.config.access_key):
            with contextlib.suppress(NotFoundError):
                try:
                    await client.sessions.destroy(rec.id or rec.name, forced=True)
                except APIError as e:
                    log.warning("could not destroy orphaned session %s: %s", rec.name, e)
                    continue
            self.registry.remove(rec.name)
            done.append(rec.name)
        return done

    async def ensure(self, progress: Callable[[str], None] | None = None) -> str:
        """The running session's id, creating (or finding again) the session first if needed."""
        if self.session_id is not None:
            return self.session_id
        if self._starting is None or self._starting.done():
            self._starting = asyncio.ensure_future(self._start(progress or (lambda _t: None)))
        try:
            return await asyncio.shield(self._starting)
        except asyncio.CancelledError:
            # Interrupted while the session was still starting: do not leave it behind.
            self._starting.cancel()
            raise

    async def _start(self, progress: Callable[[str], None]) -> str:
        client = await self.get_client()
        assert self.config is not None
        name = self._wanted_name(self.config.access_key)
        self.session_name = name
        s = self.settings
        t0 = time.monotonic()
        progress(f"Backend.AI: starting session {name} ({s.image}) …")
        listener = asyncio.ensure_future(self._progress(client, name, progress, t0))
        try:
            info = await client.sessions.create(
                s.image,
                name=name,
                resources=dict(s.resources),
                resource_opts=dict(s.resource_opts) or None,
                mounts=s.mounts,
                mount_map=dict(s.mount_map) or None,
                environ=dict(s.env),
                scaling_group=s.scaling_group,
                reuse_if_exists=True,
            )
        except asyncio.CancelledError:
            await asyncio.shield(self._abandon(name))
            raise
        finally:
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener
        self.session_id = info.id or name
        self.reattached = not info.created
        self.terminated_reason = None
        self.registry.save(
            Record(
                name=name,
                id=self.session_id,
                endpoint=str(self.config.endpoint),
                access_key=self.config.access_key,
                pid=os.getpid(),
                host=__import__("socket").gethostname(),
                keep=s.keep or bool(s.name),
            )
        )
        self._watch = asyncio.ensure_future(self._watch_events(client, self.session_id))
        if s.rich:
            await self._install_rich()
        took = time.monotonic() - t0
        what = "found again (variables kept)" if self.reattached else f"ready in {took:.1f} s"
        mode = "rich output" if self.rich else "plain output"
        progress(f"Backend.AI: session {name} {what} · {s.image} · {mode}")
        return self.session_id

    async def _abandon(self, name: str) -> None:
        client = self.client
        if client is None:
            return
        with contextlib.suppress(BackendAIError, asyncio.TimeoutError):
            await asyncio.wait_for(client.sessions.destroy(name, forced=True), 30)

    async def _progress(
        self, client: Client, name: str, progress: Callable[[str], None], t0: float
    ) -> None:
        # The whole stream of the caller's sessions, filtered here by name: managers answer 404
        # to a name that does not exist yet, and a name-filtered 26.x stream carries no
        # kernel_* events.
        shown: set[str] = set()
        try:
            async for ev in client.events.session(max_reconnects=2):
                word = PROGRESS_WORDS.get(ev.event)
                try:
                    data = ev.json() if ev.data else {}
                except BackendAIError:
                    continue
                if not isinstance(data, dict) or data.get("sessionName") != name:
                    continue
                if word and word not in shown:
                    shown.add(word)
                    took = time.monotonic() - t0
                    progress(f"Backend.AI: session {name}: {word} ({took:.0f} s)")
        except (BackendAIError, AttributeError) as e:
            log.debug("no lifecycle events: %s", e)

    async def _watch_events(self, client: Client, session_id: str) -> None:
        try:
            async for ev in client.events.session(session_id=session_id):
                if ev.event in TERMINAL_EVENTS:
                    data = ev.json() if ev.data else {}
                    reason = data.get("reason") if isinstance(data, dict) else None
                    self.terminated_reason = str(reason or ev.event.replace("_", " "))
        except (BackendAIError, ValueError, AttributeError) as e:
            log.debug("session event watch ended: %s", e)

    async def _install_rich(self) -> None:
        self.nonce = self.remote_info = None
        _frames, text = await self.run_hidden(bootstrap_code())
        found = read_ready(text)
        if found is not None:
            self.nonce, ready = found
            self.remote_info = ready.payload
        else:
            log.info("rich channel not installed; remote said: %.300s", text)

    async def run_hidden(self, code: str) -> tuple[list[Frame], str]:
        """Run code nobody sees; return its frames and its other output (for logs).

        With the rich channel the code goes with a ``silent`` header, so it leaves the remote
        execution count and history alone.
        """
        assert self.session_id is not None and self.client is not None
        nonce = self.nonce
        decoder = FrameDecoder(nonce) if nonce else None
        if nonce:
            code = cell_header(nonce, silent=True, store_history=False, allow_stdin=False) + code
        frames: list[Frame] = []
        text: list[str] = []
        async for ev in self.client.sessions.execute(self.session_id, code):
            if isinstance(ev, Output) and isinstance(ev.item.data, str):
                parts: list[str | Frame] = (
                    decoder.feed(ev.item.data)
                    if decoder and ev.item.kind == "stdout"
                    else [ev.item.data]
                )
                for part in parts:
                    (frames if isinstance(part, Frame) else text).append(part)  # type: ignore[arg-type]
        return frames, "".join(text)

    async def helper(self, method: str, *args: str | int) -> dict[str, Any] | None:
        """Ask the remote kernel for a completion/inspection reply over the rich channel."""
        if not self.rich or self.session_id is None:
            return None
        rid = secrets.token_hex(4)
        frames, _ = await self.run_hidden(helper_call(rid, method, *args))
        for f in frames:
            if f.type == "reply" and f.payload.get("id") == rid:
                content = f.payload.get("content")
                return content if isinstance(content, dict) else None
        return None

    def execute(self, code: str) -> Execution:
        assert self.client is not None and self.session_id is not None
        return self.client.sessions.execute(self.session_id, code)

    async def interrupt(self) -> None:
        if self.client is not None and self.session_id is not None:
            await self.client.sessions.interrupt(self.session_id)

    async def check_gone(self) -> SessionGone | None:
        """After a failed run: is the session gone? Returns the error to report, if so."""
        if self.client is None or self.session_id is None:
            return None
        name = self.session_name or self.session_id
        try:
            info = await self.client.sessions.info(self.session_id)
        except NotFoundError:
            return SessionGone(name, self.terminated_reason)
        except BackendAIError:
            return None
        status = str(info.get("status", "")).upper()
        if status in _DEAD:
            reason = info.get("statusInfo") or info.get("status_info") or self.terminated_reason
            return SessionGone(name, str(reason) if reason else status.lower())
        return None

    def forget(self) -> None:
        """Drop the dead session; the next cell starts a new one."""
        if self.session_name:
            self.registry.remove(self.session_name)
        if self._watch is not None:
            self._watch.cancel()
        self.session_id = self.session_name = self.nonce = None
        self.remote_info = None

    async def close(self, *, keep: bool | None = None) -> None:
        """End of the kernel: destroy the session unless it is kept; close the client."""
        keep = self.settings.keep or bool(self.settings.name) if keep is None else keep
        if self._watch is not None:
            self._watch.cancel()
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting
        with self._sync_lock:
            if self._closed:
                return
            self._closed = True
        try:
            await self._finish(self.client, keep)
        finally:
            if self.client is not None:
                await self.client.close()

    async def _finish(self, client: Client | None, keep: bool) -> None:
        if client is None or self.session_id is None or self.session_name is None:
            return
        assert self.config is not None
        if keep:
            self.registry.save(
                Record(
                    name=self.session_name,
                    id=self.session_id,
                    endpoint=str(self.config.endpoint),
                    access_key=self.config.access_key,
                    pid=None,
                    host=__import__("socket").gethostname(),
                    keep=True,
                )
            )
            return
        try:
            await asyncio.wait_for(client.sessions.destroy(self.session_id, forced=True), 20)
        except NotFoundError:
            pass
        except (BackendAIError, asyncio.TimeoutError) as e:
            log.warning("could not destroy session %s: %s", self.session_name, e)
            return
        self.registry.remove(self.session_name)

    def close_sync(self, timeout: float = 15.0) -> None:
        """Signal handlers and ``atexit``: destroy/keep on a private loop in a thread."""
        with self._sync_lock:
            if self._closed or self.session_id is None or self.config is None:
                self._closed = True
                return
            self._closed = True
        keep = self.settings.keep or bool(self.settings.name)
        config = self.config

        async def work() -> None:
            async with Client(config) as client:
                await self._finish(client, keep)

        thread = threading.Thread(target=lambda: asyncio.run(work()), daemon=True)
        thread.start()
        thread.join(timeout)
