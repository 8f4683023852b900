"""Runs and sweeps: the async work behind ``run`` and ``start``, on the workspace loop.

The coroutines here never touch ``sys.stdout`` or IPython's display machinery: a run's output
goes through the one execution path (:func:`~..workspace.relay`, rich channel included: every
interactive session a run starts gets the same bootstrap as the proxy kernel's) into an
:class:`~.output.EmitSink`, whose notes the magic's thread shows (:mod:`.output`). A
``KeyboardInterrupt`` cancels the work *and* waits for its clean-up (destroying sessions).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from IPython.core.error import UsageError

from ..client import APIError, BackendAIError, Client, SessionInfo
from ..client.capacity import accelerator_slots, describe_slots, parse_slot_map
from ..client.defaults import named_image
from ..client.images import explain_unknown_image, is_unknown_image, pick_image
from ..client.lifecycle import FINISHED_STATUSES
from ..client.parsing import Case, parse_mounts, parse_resource_flags
from ..client.sessions import new_session_name
from ..workspace import install_rich, relay
from ..workspace.kernel_session import with_header
from .grammar import PROG, MagicParser
from .output import CaseDone, CaseStarted, CaseWaiting, Emit, EmitSink, Show, Status
from .results import CaseResult, RunResult

__all__ = [
    "RunSpec",
    "add_session_arguments",
    "run_session",
    "run_sweep",
    "spec_from_args",
]


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


def add_session_arguments(p: MagicParser, *, start: bool) -> None:
    """Flags shared by ``run`` and ``start`` (session creation)."""
    p.add_argument(
        "image", nargs="?", default=None,
        help="the kernel image (default: $BACKEND_IMAGE, else the stock Python image)",
    )
    p.add_argument("-t", "--name", "--client-token", dest="name", metavar="NAME",
                   help="session name: an existing session with this name is reused")
    p.add_argument("--type", dest="type", choices=("interactive", "batch"),
                   default="interactive", help="session type (default: interactive)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VAL",
                   help="environment variable (repeatable; $VAR refers to an --env-range)")
    p.add_argument("-r", "--resources", action="append", default=[], metavar="KEY=VAL",
                   help="resource slot, e.g. cpu=2, mem=4g, cuda.shares=0.5 (repeatable)")
    p.add_argument("-m", "--mount", action="append", default=[], metavar="NAME[:PATH]",
                   help="mount a storage folder, optionally at PATH (repeatable)")
    p.add_argument("--scaling-group", "--sgroup", dest="scaling_group", metavar="NAME",
                   help="the scaling (resource) group to run in")
    p.add_argument("--cluster-size", type=int, default=1, metavar="N",
                   help="number of containers (default 1)")
    p.add_argument("--tag", help="a user-defined tag for the session")
    p.add_argument("--owner", "--owner-access-key", dest="owner", metavar="ACCESS_KEY",
                   help="create the session for another user (admins)")
    p.add_argument("--enqueue-only", action="store_true",
                   help="return right after the session is queued (no code runs)")
    p.add_argument("--max-wait", type=int, default=0, metavar="SECONDS",
                   help="wait at most this long for the session to start (0 = no limit)")
    p.add_argument("-d", "--domain", help="domain name (default: the configured one)")
    p.add_argument("-g", "--group", help="project (group) name (default: the configured one)")
    p.add_argument("-q", "--quiet", action="store_true", help="no status messages")
    if start:
        p.add_argument("--startup-command", metavar="CMD",
                       help="command run when the session starts (required for --type batch)")


def spec_from_args(args: argparse.Namespace, **extra: Any) -> RunSpec:
    """The session flags of ``run``/``start`` checked and parsed (a bad one: ``UsageError``)."""
    if args.cluster_size < 1:
        raise UsageError(f"{PROG} {args.command}: --cluster-size must be at least 1")
    if args.max_wait < 0:
        raise UsageError(f"{PROG} {args.command}: --max-wait must be >= 0 seconds")
    res = parse_resource_flags(args.resources)
    mounts, mount_map = parse_mounts(args.mount)
    image = args.image
    if image is not None and os.path.isfile(image) and getattr(args, "files", None) is not None:
        # `run main.py` without an image: the word is a local file, not an image name.
        args.files.insert(0, image)
        image = None
    return RunSpec(
        image=image or named_image(), name=args.name, type=args.type, resources=res.resources,
        resource_opts=res.resource_opts, mounts=tuple(mounts), mount_map=mount_map,
        scaling_group=args.scaling_group, cluster_size=args.cluster_size, tag=args.tag,
        owner=args.owner, enqueue_only=args.enqueue_only, max_wait=args.max_wait,
        domain=args.domain, group=args.group, quiet=args.quiet, **extra,
    )


# -- one session -----------------------------------------------------------------------------


async def _destroy(client: Client, session: str, created: bool) -> None:
    """Destroy the run's session; when its create was interrupted, the manager may still be
    registering the name: "not found" is tried again, 3 times."""
    await client.sessions.destroy_quietly(
        session, timeout=None, attempts=1 if created else 4, retry_delay=0.5,
        registering=not created,
    )


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
                status=FINISHED_STATUSES,
                fields=("id", "status", "result"), limit=100,
            )
        except BackendAIError:
            items = []
        for item in items:
            if item.id == sid:
                result = item.result.upper()
                return (0 if result == "SUCCESS" else 1 if result == "FAILURE" else None), logs
        await asyncio.sleep(poll)


async def _run_in(
    client: Client, sid: str, spec: RunSpec, case: Case, sink: EmitSink
) -> int | None:
    """Run the case in the ready session ``sid``: a batch session is waited for (its logs are
    the output); otherwise the files are uploaded, then the code or the batch command runs."""
    if spec.type == "batch":
        exit_code, logs = await _wait_batch(client, sid)
        sink.messages.append(("stream", {"name": "stdout", "text": logs}))
        if sink.live and logs:
            sink.emit(Show(sink.messages[-1]))
        return exit_code
    if spec.files:
        await client.sessions.upload(sid, spec.files, basedir=spec.basedir)
        if sink.live and not spec.quiet:
            sink.emit(Status(f"✓ Uploaded {len(spec.files)} file(s)."))
    rich = await install_rich(client, sid) if spec.code is not None else None
    nonce = rich[0] if rich is not None else None
    return await _execute(client, sid, spec, case, sink, nonce)


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


async def run_session(
    client: Client, spec: RunSpec, case: Case, emit: Emit, *, name: str | None = None,
    live: bool = True, destroy: bool = False, on_wait: Callable[[str], None] | None = None,
) -> RunResult:
    """Create (or reuse) a session, upload files, run the code, collect the output.

    ``destroy`` removes the session afterwards, also when the run is cancelled (a session being
    created is destroyed by name). With ``live`` the output is emitted as it arrives.
    """
    name = name or spec.name or new_session_name()
    started = time.monotonic()
    sink = EmitSink(emit, live, spec.quiet)
    out = sink.messages
    sid = gpu = ""
    exit_code: int | None = None
    status = ""
    created = False
    if on_wait is None and live and not spec.quiet:
        on_wait = wait_notes(emit, name)
    try:
        info = await create_session(
            client, spec, name=name, type=spec.type, resources=spec.resources,
            resource_opts=spec.resource_opts, mounts=spec.mounts, mount_map=spec.mount_map,
            environ=case.env, scaling_group=spec.scaling_group, cluster_size=spec.cluster_size,
            tag=spec.tag, owner_access_key=spec.owner, enqueue_only=spec.enqueue_only,
            max_wait=spec.max_wait, domain=spec.domain, group=spec.group,
            startup_command=case.exec if spec.type == "batch" else None, on_wait=on_wait,
        )
        created = True
        sid, status = info.id, info.status
        gpu = await _gpu_of(client, sid, spec.resources)
        if live and not spec.quiet:
            verb = "is ready" if info.created else "is reused"
            if status not in ("RUNNING", ""):
                verb = f"is {status}"
            emit(Status(f"✓ Session {info.name} ({sid}) {verb}."))
        if spec.enqueue_only or status not in ("RUNNING", "", "PREPARED"):
            return RunResult(sid, info.name, None, "", "", time.monotonic() - started, (), status,
                             gpu=gpu)
        exit_code = await _run_in(client, sid, spec, case, sink)
        status = "FINISHED"
        if live and not spec.quiet:
            mark = "✓" if exit_code == 0 else "✗"
            emit(Status(f"{mark} Execution finished (exit code {exit_code})."))
    finally:
        if destroy:
            # An interrupt must not stop the clean-up half-way.
            await _complete(_destroy(client, sid or name, created))
            if live and not spec.quiet:
                emit(Status(f"✓ Session {name} destroyed."))
    stdout = "".join(c["text"] for t, c in out if t == "stream" and c["name"] == "stdout")
    stderr = "".join(c["text"] for t, c in out if t == "stream" and c["name"] == "stderr")
    return RunResult(sid, name, exit_code, stdout, stderr, time.monotonic() - started,
                     tuple(out), status, sink.error, gpu)


async def _gpu_of(client: Client, sid: str, resources: dict[str, str]) -> str:
    """The accelerator slots a session occupies, in words, when it asked for any."""
    if not accelerator_slots(resources):
        return ""
    try:
        info = await client.sessions.info(sid)
    except BackendAIError:
        return ""
    slots = parse_slot_map(info.get("occupiedSlots") or info.get("occupied_slots"))
    return describe_slots(slots, accelerators_only=True)


def wait_notes(emit: Emit, name: str, every: float = 15.0) -> Callable[[str], None]:
    """Status lines for a session that waits to be scheduled: a new line when the reason
    changes, else one every ``every`` seconds (each is a line of the cell's output)."""
    said = [""]
    at = [0.0]

    def report(why: str) -> None:
        head, now = why.rsplit(" (", 1)[0], time.monotonic()
        if head != said[0] or now - at[0] >= every:
            said[0], at[0] = head, now
            emit(Status(f"… Session {name}: {why}"))

    return report


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
                    client, spec, case, emit, name=f"{prefix}-{index}", live=False, destroy=True,
                    on_wait=lambda why: emit(CaseWaiting(index, why)),
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
