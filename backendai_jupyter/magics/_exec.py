"""Runs and sweeps: the async work (on the workspace loop) and the pump that shows its output.

The coroutines here run on the workspace's loop and never touch ``sys.stdout`` or IPython's
display machinery. A run's output goes through the one execution path
(:func:`~..workspace.relay`, rich channel included: every interactive session a run starts gets
the same bootstrap as the proxy kernel's) into an :class:`EmitSink`, which puts :data:`Note`
items into a thread-safe queue; :func:`drive` -- running in the magic's own thread -- renders
them. That keeps output in the
cell that asked for it (ipykernel routes output by the calling thread's parent message), lets
``input()`` in remote code be answered with the notebook's own prompt, and makes a
``KeyboardInterrupt`` cancel the work *and* wait for its clean-up (destroying sessions).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..client import APIError, BackendAIError, Client, NotFoundError, SessionInfo, StepFinished
from ..client.images import explain_unknown_image, is_unknown_image, pick_image
from ..client.parsing import Case
from ..client.sessions import new_session_name
from ..display.outputs import Message
from ..workspace import current, install_rich, relay
from ..workspace.session import with_header
from .results import CaseResult, RunResult

__all__ = [
    "CaseDone",
    "CaseStarted",
    "EmitSink",
    "InputRequest",
    "RunSpec",
    "Show",
    "Status",
    "drive",
    "run_session",
    "run_sweep",
]

T = TypeVar("T")

CLEANUP_TIMEOUT = 60.0  # seconds an interrupted run may take to destroy its sessions


# -- what the loop tells the magic's thread ------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """A status line (``✓ Session ... is ready``), shown on stderr."""

    text: str


@dataclass(frozen=True)
class Show:
    """One Jupyter output message produced by the remote code."""

    message: Message


@dataclass(frozen=True)
class InputRequest:
    """The remote code called ``input()``: answer with ``reply`` (a future on the loop)."""

    prompt: str
    password: bool
    reply: asyncio.Future[str]


@dataclass(frozen=True)
class CaseStarted:
    index: int


@dataclass(frozen=True)
class CaseDone:
    case: CaseResult


Note = Status | Show | InputRequest | CaseStarted | CaseDone
Emit = Callable[[Note], None]


@dataclass(frozen=True)
class RunSpec:
    """Everything ``run`` needs, already parsed and validated (see ``client/parsing.py``)."""

    image: str
    name: str | None = None
    type: Literal["interactive", "batch"] = "interactive"
    code: str | None = None
    exec: str | None = None
    build: str | None = None
    files: tuple[str, ...] = ()
    basedir: str | None = None
    resources: dict[str, str] = field(default_factory=dict)
    resource_opts: dict[str, str] = field(default_factory=dict)
    mounts: tuple[str, ...] = ()
    mount_map: dict[str, str] = field(default_factory=dict)
    scaling_group: str | None = None
    cluster_size: int = 1
    tag: str | None = None
    owner: str | None = None
    enqueue_only: bool = False
    max_wait: int = 0
    domain: str | None = None
    group: str | None = None
    quiet: bool = False
    rm: bool = False


# -- one session -----------------------------------------------------------------------------


async def create_session(client: Client, spec: RunSpec, **kwargs: Any) -> SessionInfo:
    """Create ``spec``'s session; no image named: the cluster's newest Python image
    (:func:`~..client.images.pick_image`), an unknown one: the closest ones and the fix."""
    image = spec.image or (await pick_image(client, spec.resources)).ref
    try:
        return await client.sessions.create(image, **kwargs)
    except APIError as e:
        if is_unknown_image(e):
            raise await explain_unknown_image(client, image) from None
        raise


async def _destroy_quietly(client: Client, session: str, *, retries: int = 0) -> None:
    """Destroy ``session``; a session the server does not know (yet) is retried ``retries``
    times (an interrupted create may still be registering it)."""
    for attempt in range(retries + 1):
        try:
            await client.sessions.destroy(session, forced=True)
            return
        except NotFoundError:
            if attempt < retries:
                await asyncio.sleep(0.5)
        except BackendAIError:
            return


async def _complete(coro: Coroutine[Any, Any, None]) -> None:
    """Await ``coro`` to the end even if we are cancelled (again) meanwhile, then re-raise the
    cancellation. ``asyncio.shield`` alone returns early on a second ``cancel()``."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


class EmitSink:
    """The magics' :class:`~..workspace.Sink`: collects a run's messages; when ``live``, also
    emits them (and input requests) to the magic's thread. A sweep case is not live: an
    ``input()`` there gets an empty line."""

    def __init__(self, emit: Emit, live: bool, quiet: bool) -> None:
        self.emit = emit
        self.live = live
        self.quiet = quiet
        self.messages: list[Message] = []
        self.error: dict[str, Any] | None = None

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[bytes] | None = None,
    ) -> None:
        message = (msg_type, content)
        if msg_type == "error":
            self.error = content
        self.messages.append(message)
        if self.live:
            self.emit(Show(message))

    async def ask(self, prompt: str, password: bool) -> str | None:
        if not self.live:
            return ""
        reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.emit(InputRequest(prompt, password, reply))
        return await reply

    def notice(self, event: object) -> None:
        if isinstance(event, StepFinished) and event.step == "build" and event.exit_code:
            if self.live and not self.quiet:
                self.emit(Status(f"✗ build failed (exit code {event.exit_code})"))


async def _execute(
    client: Client, sid: str, spec: RunSpec, case: Case, sink: EmitSink, nonce: str | None
) -> int | None:
    if spec.code is not None:
        run = client.sessions.execute(sid, with_header(spec.code, nonce, allow_stdin=sink.live))
    else:
        options = {"clean": "*", "build": spec.build or "*", "exec": case.exec or "*"}
        run = client.sessions.execute(sid, "", mode="batch", options=options)
        nonce = None  # a batch command's output is not IPython's
    outcome = await relay(run, sink, nonce=nonce)
    if outcome.error is not None and not outcome.exit_code:
        # The rich channel reported the exception itself; some runners then say exit code 0.
        return 1
    return outcome.exit_code


async def _wait_batch(client: Client, sid: str, poll: float = 0.5) -> tuple[int | None, str]:
    """Wait for a batch session to end; return (exit code, its logs)."""
    logs = ""
    while True:
        with contextlib.suppress(BackendAIError):
            logs = await client.sessions.logs(sid) or logs
        try:
            items = await client.sessions.list(
                status=("TERMINATED", "CANCELLED", "ERROR"),
                fields=("id", "status", "result"), limit=100,
            )
        except BackendAIError:
            items = []
        for item in items:
            if item.id == sid:
                result = item.result.upper()
                return (0 if result == "SUCCESS" else 1 if result == "FAILURE" else None), logs
        await asyncio.sleep(poll)


async def run_session(
    client: Client, spec: RunSpec, case: Case, emit: Emit, *, name: str | None = None,
    live: bool = True, destroy: bool = False,
) -> RunResult:
    """Create (or reuse) a session, upload files, run the code, collect the output.

    ``destroy`` removes the session afterwards, also when the run is cancelled (a session being
    created is destroyed by name). With ``live`` the output is emitted as it arrives.
    """
    name = name or spec.name or new_session_name()
    started = time.monotonic()
    sink = EmitSink(emit, live, spec.quiet)
    out = sink.messages
    sid = ""
    exit_code: int | None = None
    status = ""
    created = False
    try:
        info = await create_session(
            client, spec, name=name, type=spec.type, resources=spec.resources,
            resource_opts=spec.resource_opts, mounts=spec.mounts, mount_map=spec.mount_map,
            environ=case.env, scaling_group=spec.scaling_group, cluster_size=spec.cluster_size,
            tag=spec.tag, owner_access_key=spec.owner, enqueue_only=spec.enqueue_only,
            max_wait=spec.max_wait, domain=spec.domain, group=spec.group,
            startup_command=case.exec if spec.type == "batch" else None,
        )
        created = True
        sid, status = info.id, info.status
        if live and not spec.quiet:
            verb = "is ready" if info.created else "is reused"
            if status not in ("RUNNING", ""):
                verb = f"is {status}"
            emit(Status(f"✓ Session {info.name} ({sid}) {verb}."))
        if spec.enqueue_only or status not in ("RUNNING", "", "PREPARED"):
            return RunResult(sid, info.name, None, "", "", time.monotonic() - started, (), status)
        if spec.type == "batch":
            exit_code, logs = await _wait_batch(client, sid)
            out.append(("stream", {"name": "stdout", "text": logs}))
            if live and logs:
                emit(Show(out[-1]))
        else:
            if spec.files:
                await client.sessions.upload(sid, spec.files, basedir=spec.basedir)
                if live and not spec.quiet:
                    emit(Status(f"✓ Uploaded {len(spec.files)} file(s)."))
            rich = await install_rich(client, sid) if spec.code is not None else None
            nonce = rich[0] if rich is not None else None
            exit_code = await _execute(client, sid, spec, case, sink, nonce)
        status = "FINISHED"
        if live and not spec.quiet:
            mark = "✓" if exit_code == 0 else "✗"
            emit(Status(f"{mark} Execution finished (exit code {exit_code})."))
    finally:
        if destroy:
            # An interrupt must not stop the clean-up half-way.
            await _complete(_destroy_quietly(client, sid or name, retries=0 if created else 3))
            if live and not spec.quiet:
                emit(Status(f"✓ Session {name} destroyed."))
    stdout = "".join(c["text"] for t, c in out if t == "stream" and c["name"] == "stdout")
    stderr = "".join(c["text"] for t, c in out if t == "stream" and c["name"] == "stderr")
    return RunResult(sid, name, exit_code, stdout, stderr, time.monotonic() - started,
                     tuple(out), status, sink.error)


# -- sweeps ----------------------------------------------------------------------------------


async def run_sweep(
    client: Client, spec: RunSpec, cases: Sequence[Case], emit: Emit, max_parallel: int
) -> list[CaseResult]:
    """Run every case in its own session, at most ``max_parallel`` at a time.

    Each session is destroyed when its case ends. On cancellation the pending cases never start
    and the running ones are destroyed before this coroutine finishes.
    """
    prefix = spec.name or new_session_name()
    gate = asyncio.Semaphore(max_parallel)

    async def one(index: int, case: Case) -> CaseResult:
        async with gate:
            emit(CaseStarted(index))
            try:
                result = await run_session(
                    client, spec, case, emit, name=f"{prefix}-{index}", live=False, destroy=True
                )
                done = CaseResult(index, case.env_vars, case.exec_vars, result)
            except BackendAIError as e:
                done = CaseResult(index, case.env_vars, case.exec_vars, None, str(e))
            emit(CaseDone(done))
            return done

    tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(cases, 1)]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        # Every task's own clean-up (destroying its session) finishes before we return.
        await asyncio.gather(*tasks, return_exceptions=True)


# -- the pump in the magic's thread ----------------------------------------------------------


def drive(
    make: Callable[[Emit], Coroutine[Any, Any, T]],
    handle: Callable[[Note], None],
    *,
    cleanup_timeout: float = CLEANUP_TIMEOUT,
) -> T:
    """Run ``make(emit)`` on the background loop; handle its notes here until it is done.

    On ``KeyboardInterrupt`` the task is cancelled, its clean-up is awaited (up to
    ``cleanup_timeout`` seconds) and the interrupt is re-raised.
    """
    bg = current().loop
    notes: queue.SimpleQueue[Note] = queue.SimpleQueue()
    holder: list[asyncio.Task[Any]] = []

    async def tracked() -> T:
        task = asyncio.current_task()
        if task is not None:
            holder.append(task)
        return await make(notes.put)

    future = bg.submit(tracked())
    try:
        while True:
            try:
                note = notes.get(timeout=0.05)
            except queue.Empty:
                if future.done():
                    break
                continue
            handle(note)
        while not notes.empty():
            handle(notes.get_nowait())
        return future.result()
    except KeyboardInterrupt:
        if holder:
            bg.loop.call_soon_threadsafe(holder[0].cancel)
        else:
            future.cancel()
        with contextlib.suppress(BaseException):
            future.result(cleanup_timeout)
        with contextlib.suppress(BaseException):
            while not notes.empty():
                note = notes.get_nowait()
                if isinstance(note, InputRequest):
                    bg.loop.call_soon_threadsafe(note.reply.cancel)
        raise


def answer_input(note: InputRequest, text: str) -> None:
    """Hand an ``input()`` answer back to the loop that waits for it."""
    def settle() -> None:
        if not note.reply.done():
            note.reply.set_result(text)

    note.reply.get_loop().call_soon_threadsafe(settle)


def upload_paths(files: Sequence[str]) -> tuple[str, ...]:
    """Check local FILES exist before any session is created."""
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"no such local file: {f}")
    return tuple(files)


def write_status(note: Status) -> None:
    print(note.text, file=sys.stderr, flush=True)
