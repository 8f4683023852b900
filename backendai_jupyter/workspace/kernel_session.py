"""The kernel session: the one Backend.AI compute session behind a proxy kernel.

Owned by the :class:`~.Workspace` and used only on its loop. Creates the session lazily (or at
kernel start) with the workspace's client and session settings, shows its lifecycle progress,
installs the rich channel (:func:`install_rich`, also used for the sessions the magics start),
finds a kept session again by its stable name, watches lifecycle events for a termination
reason, and destroys or keeps the session at the end.

A session keeps the client and settings it started with: a later ``%backendai config set``
applies to the next session (``%backendai kernel stop`` ends this one).

This module holds the session's state and its run/stop lifecycle; the start steps that need only
a client and settings (image choice, create with wait lines, progress and termination events,
folder upload) are in :mod:`.session_start`, hidden runs and the rich channel's installation in
:mod:`.rich_install`, so each stays small enough to read whole. Named ``kernel_session`` (it was
``session``) to say which of the package's sessions it means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client import (
    APIError,
    BackendAIError,
    Client,
    ClientConfig,
    Execution,
    NotFoundError,
    SessionGone,
)
from ..client.images import ImageChoice
from ..client.lifecycle import has_ended
from ..richchannel import helper_call, with_header
from .allocation import read_allocation
from .background import Collector
from .folder_upload import Answers
from .registry import Record, Registry
from .relay import Outcome, Sink, relay
from .rich_install import FeedSink, HiddenSink, install_live, install_rich, run_hidden
from .session_start import (
    PROGRESS_WORDS,
    choose_image,
    create_session,
    send_folder,
    show_progress,
    wanted_name,
    watch_termination,
)
from .settings import SessionSettings

__all__ = [
    "PROGRESS_WORDS",
    "HiddenSink",
    "KernelSession",
    "SessionSnapshot",
    "install_rich",
    "run_hidden",
    "with_header",  # the rich channel's (re-exported: the magics import it from here)
]

log = logging.getLogger(__name__)

ClientSource = Callable[[], Awaitable[Client]]


@dataclass(frozen=True)
class SessionSnapshot:
    """What other threads may know of the kernel session: replaced whole, never changed, by the
    workspace's loop when the session starts or ends (the kernel's ``kernel_info``, the comm
    handlers and ``%backendai config`` read it from their own threads)."""

    session_name: str | None = None
    nonce: str | None = None
    remote_info: Mapping[str, Any] | None = None
    """The bootstrap's ``ready`` frame: remote versions and ``language_info``."""

    @property
    def active(self) -> bool:
        return self.session_name is not None

    @property
    def rich(self) -> bool:
        """A live session with the rich channel."""
        return self.active and self.nonce is not None


class KernelSession:
    """One kernel's compute session. Not thread-safe: use it on the workspace's loop."""

    def __init__(
        self,
        settings: Callable[[], SessionSettings],
        client: ClientSource,
        *,
        notebook_key: str | None = None,
        registry: Registry | None = None,
    ) -> None:
        self._wanted = settings
        self._client_source = client
        self.notebook_key = notebook_key
        self.folder = Path.cwd()
        """The notebook's folder: jupyter_server starts a kernel in its notebook's directory."""
        self.registry = registry or Registry()
        self.started_with: SessionSettings | None = None
        self.config: ClientConfig | None = None
        self.client: Client | None = None
        self.session_id: str | None = None
        self.session_name: str | None = None
        self.nonce: str | None = None
        self.remote_info: dict[str, Any] | None = None
        """The bootstrap's ``ready`` frame: remote versions and ``language_info``."""
        self.reattached = False
        self.allocation = ""  # the GPU the session got, in words (see .allocation)
        self.image: str | None = None
        """The image the live (or last) session runs: the named one or the cluster's choice."""
        self.chosen_images: dict[tuple[str, bool], ImageChoice] = {}
        """``image=auto`` choices, per endpoint and GPU request: asked once per kernel."""
        self.terminated_reason: str | None = None
        self.snapshot = SessionSnapshot()
        """For other threads; see :class:`SessionSnapshot`."""
        self.background = Collector()
        self._watch: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[str] | None = None
        self._closed = False
        self._sync_lock = threading.Lock()

    @property
    def settings(self) -> SessionSettings:
        """The live session's settings, else the ones the next session will use."""
        return self.started_with or self._wanted()

    # -- client ---------------------------------------------------------------------------------

    async def get_client(self) -> Client:
        """The live session's client, else the workspace's current one."""
        if self.client is not None and self.session_id is not None:
            return self.client
        self.client = await self._client_source()
        self.config = self.client.config
        return self.client

    @property
    def rich(self) -> bool:
        return self.nonce is not None

    @property
    def active(self) -> bool:
        return self.session_id is not None

    def _wanted_name(self, settings: SessionSettings, access_key: str) -> str:
        return wanted_name(settings, access_key, self.notebook_key)

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

    async def _image_for(self, client: Client, s: SessionSettings) -> tuple[str, str]:
        """The image to run and, when the cluster chose it (``image=auto``), why."""
        return await choose_image(self.chosen_images, client, s)

    async def _start(self, progress: Callable[[str], None]) -> str:
        client = await self.get_client()
        assert self.config is not None
        s = self._wanted()
        name = self._wanted_name(s, self.config.access_key)
        self.session_name = name
        t0 = time.monotonic()
        image, why = await self._image_for(client, s)
        self.image = image
        progress(f"Backend.AI: starting session {name} ({image}{why}) …")
        listener = asyncio.ensure_future(show_progress(client, name, progress, t0))
        try:
            info = await create_session(client, s, name, image, progress)
        except asyncio.CancelledError:
            await asyncio.shield(self._abandon(name))
            raise
        finally:
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener
        self.session_id = info.id or name
        self.started_with = s
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
        self._watch = asyncio.ensure_future(
            watch_termination(client, self.session_id, self._set_terminated)
        )
        self.nonce = self.remote_info = None
        if s.rich:
            found = await install_rich(client, self.session_id)
            if found is not None:
                self.nonce, self.remote_info = found
                await self._install_live(client)
        self.allocation = await read_allocation(client, self.session_id, s, self._hidden_text)
        self.snapshot = SessionSnapshot(name, self.nonce, self.remote_info)
        took = time.monotonic() - t0
        what = "found again (variables kept)" if self.reattached else f"ready in {took:.1f} s"
        mode = "rich output" if self.rich else "plain output"
        # A session found again already has the files (and maybe newer ones): not sent twice.
        sent = ""
        if s.upload_dir and not self.reattached:
            sent = f" · {await send_folder(self.folder, s, self._hidden_text, progress)}"
        shown = f"{image}{why} · {self.allocation}" if self.allocation else f"{image}{why}"
        progress(f"Backend.AI: session {name} {what} · {shown} · {mode}{sent}")
        return self.session_id

    async def _install_live(self, client: Client) -> None:
        """Start the session's live-output pump (see :func:`.rich_install.install_live`)."""
        assert self.session_id is not None
        await install_live(client, self.session_id, self.nonce)

    async def _abandon(self, name: str) -> None:
        client = self.client
        if client is None:
            return
        await client.sessions.destroy_quietly(name, timeout=30)

    def _set_terminated(self, reason: str) -> None:
        self.terminated_reason = reason

    async def _hidden_text(self, code: str, answers: Answers) -> str:
        sink = FeedSink(answers)
        outcome = await self.run_hidden(code, sink, allow_stdin=True)
        text = "".join(sink.text)
        if outcome.error is not None:
            text += f"\n{outcome.error.get('ename')}: {outcome.error.get('evalue')}"
        return text

    async def run_hidden(
        self, code: str, sink: Sink | None = None, *, allow_stdin: bool = False
    ) -> Outcome:
        """Run code in the live session through the one execution path (see :func:`run_hidden`)."""
        assert self.session_id is not None and self.client is not None
        try:
            return await run_hidden(
                self.client, self.session_id, code, self.nonce, sink, allow_stdin=allow_stdin
            )
        finally:
            self.background.after_run(self.client, self.session_id, self.nonce)

    async def helper(self, method: str, *args: str | int) -> dict[str, Any] | None:
        """Ask the remote kernel for a completion/inspection reply over the rich channel."""
        if not self.rich or self.session_id is None:
            return None
        rid = secrets.token_hex(4)
        outcome = await self.run_hidden(helper_call(rid, method, *args))
        for f in outcome.frames:
            if f.type == "reply" and f.payload.get("id") == rid:
                content = f.payload.get("content")
                return content if isinstance(content, dict) else None
        return None

    def execute(self, code: str) -> Execution:
        assert self.client is not None and self.session_id is not None
        return self.client.sessions.execute(self.session_id, code)

    async def run(
        self,
        code: str,
        sink: Sink,
        *,
        count: int | None = None,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: dict[str, Any] | None = None,
        allow_stdin: bool = True,
    ) -> Outcome:
        """Run a cell in the live session through the one execution path."""
        code = with_header(
            code,
            self.nonce,
            count=count,
            silent=silent,
            store_history=store_history,
            user_expressions=user_expressions,
            allow_stdin=allow_stdin,
        )
        if not silent:
            self.background.sink = sink
        try:
            return await relay(self.execute(code), sink, nonce=self.nonce, execution_count=count)
        finally:
            assert self.client is not None and self.session_id is not None
            self.background.after_run(self.client, self.session_id, self.nonce)

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
        status = info.status.upper()
        if has_ended(status):
            reason = info.status_info or self.terminated_reason
            return SessionGone(name, reason or status.lower())
        return None

    def forget(self) -> None:
        """Drop the dead session; the next cell starts a new one."""
        if self.session_name:
            self.registry.remove(self.session_name)
        if self._watch is not None:
            self._watch.cancel()
        if self.client is not None and self.session_id is not None:
            self.client.sessions.drop_collector(self.session_id)
        self.background = Collector()
        self.session_id = self.session_name = self.nonce = None
        self.remote_info = None
        self.started_with = None
        self.allocation = ""
        self.snapshot = SessionSnapshot()

    def kept_name(self) -> str | None:
        """The name to report when this session ends, if it is a kept one (its state was meant
        to outlive the kernel, so a new session must not silently replace it)."""
        settings = self.settings
        if settings.keep or settings.name:
            return self.session_name or settings.name or "the kept session"
        return None

    async def stop(self) -> None:
        """``%backendai kernel stop``: destroy the live session now; the next cell starts anew."""
        sid, client = self.session_id, self.client
        if sid and client:
            with contextlib.suppress(BackendAIError):
                await client.sessions.destroy(sid, forced=True)
        self.forget()

    async def close(self, *, keep: bool | None = None) -> None:
        """End of the kernel: destroy the session unless it is kept (the workspace closes the
        client)."""
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
        await self._finish(self.client, keep)

    async def _finish(self, client: Client | None, keep: bool) -> None:
        if client is None or self.session_id is None or self.session_name is None:
            return
        client.sessions.drop_collector(self.session_id)
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
        why = await client.sessions.destroy_quietly(self.session_id, timeout=20)
        if why is not None:
            # The record stays: the next kernel start destroys the orphan.
            log.warning("could not destroy session %s: %s", self.session_name, why)
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
