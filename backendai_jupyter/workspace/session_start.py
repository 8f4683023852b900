"""The steps of starting a kernel session that need no session object: its name, the image
choice, the create call with its wait lines, the lifecycle progress lines, the termination
watch, and the notebook-folder upload.

Split from :mod:`.kernel_session` so that the session class holds its state and lifecycle
(start, run, stop) while what talks to the cluster while a session starts lives here, each step a
function of the client and settings it is given.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from ..client import APIError, BackendAIError, Client, SessionInfo
from ..client.images import (
    ImageChoice,
    explain_unknown_image,
    is_unknown_image,
    pick_image,
    wants_accelerator,
)
from .folder_upload import RunWithInput, scan, upload
from .settings import SessionSettings, keep_name

__all__ = [
    "PROGRESS_WORDS",
    "TERMINAL_EVENTS",
    "choose_image",
    "create_session",
    "send_folder",
    "show_progress",
    "wanted_name",
    "watch_termination",
]

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


def wanted_name(settings: SessionSettings, access_key: str, notebook_key: str | None) -> str:
    """The session's name: the named one, the kept one's stable name, else a fresh one."""
    if settings.name:
        return settings.name
    if settings.keep:
        return keep_name(notebook_key or os.getcwd(), access_key)
    return f"bjk-{secrets.token_hex(6)}"


async def choose_image(
    chosen: dict[tuple[str, bool], ImageChoice], client: Client, s: SessionSettings
) -> tuple[str, str]:
    """The image to run and, when the cluster chose it (``image=auto``), why. ``chosen`` keeps
    the cluster's choices per endpoint and GPU request (asked once per kernel)."""
    if s.image:
        return s.image, ""
    key = (str(client.config.endpoint), wants_accelerator(s.resources))
    if key not in chosen:
        chosen[key] = await pick_image(client, s.resources)
    choice = chosen[key]
    return choice.ref, f" (auto: {choice.reason}; image=REF picks another)"


async def create_session(
    client: Client, s: SessionSettings, name: str, image: str,
    progress: Callable[[str], None],
) -> SessionInfo:
    """Create (or find again) the session; the cluster's wait reasons go to ``progress``."""
    try:
        return await client.sessions.create(
            image,
            name=name,
            resources=dict(s.resources),
            resource_opts=dict(s.resource_opts) or None,
            mounts=s.mounts,
            mount_map=dict(s.mount_map) or None,
            environ=dict(s.env),
            scaling_group=s.scaling_group,
            reuse_if_exists=True,
            on_wait=lambda why: progress(f"Backend.AI: session {name}: {why}"),
        )
    except APIError as e:
        if is_unknown_image(e):  # the closest images the cluster has, and the fix
            raise await explain_unknown_image(client, image) from None
        raise


async def show_progress(
    client: Client, name: str, progress: Callable[[str], None], t0: float
) -> None:
    """One ``progress`` line per lifecycle step of the session called ``name``."""
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


async def watch_termination(
    client: Client, session_id: str, on_reason: Callable[[str], None]
) -> None:
    """Pass each termination reason the session's lifecycle events give to ``on_reason``."""
    try:
        async for ev in client.events.session(session_id=session_id):
            if ev.event in TERMINAL_EVENTS:
                data = ev.json() if ev.data else {}
                reason = data.get("reason") if isinstance(data, dict) else None
                on_reason(str(reason or ev.event.replace("_", " ")))
    except (BackendAIError, ValueError, AttributeError) as e:
        log.debug("session event watch ended: %s", e)


async def send_folder(
    folder: Path,
    s: SessionSettings,
    hidden_text: RunWithInput,
    progress: Callable[[str], None],
) -> str:
    """Copy the notebook's folder into the session (see :mod:`.folder_upload`)."""
    try:
        plan = await asyncio.to_thread(
            scan, folder, max_total=s.upload_max, max_file=s.upload_file_max
        )
        return await upload(folder, plan, hidden_text, progress)
    except (OSError, RuntimeError, BackendAIError) as e:
        return f"notebook folder not sent: {e}"
