"""Attached runs: each case's notebook executed cell by cell (nbclient) on its own
"Backend.AI Python (remote GPU)" proxy kernel, at most ``max_parallel`` at a time.

The proxy kernel gets the case's session through the settings it reads from its environment
(``BACKEND_IMAGE``, ``BACKEND_RESOURCES``, ``BACKEND_VFOLDER_MOUNTS``, ``BACKEND_SESSION_NAME``;
see :mod:`backendai_jupyter.kernel.settings`) — credentials stay in the inherited environment and
never reach a command line. Naming the session makes the kernel keep it on shutdown, so this
module owns its end: every case's session is destroyed here, whatever happened (a failed cell,
a dead kernel, Ctrl-C). The kernels write their session records into a private state directory
that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

from ..client import BackendAIError, Client, ClientConfig
from ..client.capacity import describe_slots, largest, parse_slot_map, request_amounts
from ..client.scheduling import default_parallel, pending_reason
from .notebook import first_failure, prepare
from .params import Case
from .record import read_records
from .results import CaseResult, JobResult
from .spec import KERNEL_NAME, JobSpec

__all__ = ["NullProgress", "Progress", "run_attached"]

_KERNEL_START_TIMEOUT = 120.0
DEFAULT_PARALLEL = 2  # --max-parallel when the cases ask for no GPU
WAIT_POLL = 3.0  # seconds between looks at a case's queued session


class Progress(Protocol):
    """What a runner reports while it works (a terminal bar, a notebook widget, a test)."""

    def case_started(self, case: Case, cells: int) -> None: ...

    def cell_done(self, case: Case, done: int) -> None: ...

    def case_done(self, result: CaseResult) -> None: ...

    def case_waiting(self, case: Case, why: str) -> None:
        """Why the case's session waits to be scheduled (``""``: it no longer waits)."""


class NullProgress:
    def case_started(self, case: Case, cells: int) -> None:
        pass

    def cell_done(self, case: Case, done: int) -> None:
        pass

    def case_done(self, result: CaseResult) -> None:
        pass

    def case_waiting(self, case: Case, why: str) -> None:
        pass


def connection_environ(config: ClientConfig) -> dict[str, str]:
    """The connection this process uses, as the ``BACKEND_*`` a kernel reads: the kernels
    reach the same endpoint even when it was chosen by ``%backendai config set`` or is the
    embedded local endpoint. (A webserver login cannot be handed over: keep the environment.)"""
    if config.endpoint_type != "api":
        return {}
    return {
        "BACKEND_ENDPOINT": ",".join(str(u) for u in config.endpoints),
        "BACKEND_ENDPOINT_TYPE": "api",
        "BACKEND_ACCESS_KEY": config.access_key,
        "BACKEND_SECRET_KEY": config.secret_key,
        "BACKEND_DOMAIN": config.domain,
        "BACKEND_GROUP": config.group,
        "BACKEND_SKIP_SSLCERT_VALIDATION": "true" if config.skip_ssl_verify else "false",
        "BACKEND_EXECUTE_TRANSPORT": config.execute_transport,
    }


def kernel_environ(
    spec: JobSpec, case: Case, state_dir: str, config: ClientConfig | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    if config is not None:
        env.update(connection_environ(config))
    # No image named: the kernel picks the cluster's newest Python image (client.images).
    if spec.image:
        env["BACKEND_IMAGE"] = spec.image
    env.update(
        BACKEND_SESSION_NAME=spec.session_name(case),
        # At the first cell: a kernel started ahead of its turn holds no session.
        BACKEND_SESSION_START="first-cell",
        BACKENDAI_JUPYTER_STATE_DIR=state_dir,
    )
    # -m folders are added to the ones the user mounts everywhere (-m wins for a name)
    return spec.case_shape(case).to_env(env)


async def destroy_quietly(client: Client, name: str) -> None:
    """A case's session, at its end or on a cancel: a session still being created answers an
    error while it starts, so a failure is tried again once, 2 s later."""
    await client.sessions.destroy_quietly(name, timeout=125, attempts=2, retry_delay=2)


async def _shutdown(km: AsyncKernelManager, *, graceful: bool) -> None:
    with contextlib.suppress(Exception):
        if await km.is_alive():
            # Graceful when the kernel may be starting its session: it abandons it itself.
            await km.shutdown_kernel(now=not graceful)
    with contextlib.suppress(Exception):
        await km.cleanup_resources()


class Limits:
    """``slots``: cases whose session may exist at once (``--max-parallel``). ``kernels``: proxy
    kernels alive at once, twice that: the next cases' kernels start (without a session) while
    earlier cases run, so a case that gets a slot only waits for its session."""

    def __init__(self, max_parallel: int, cases: int) -> None:
        self.slots = asyncio.Semaphore(max_parallel)
        self.kernels = asyncio.Semaphore(2 * max_parallel)
        # Slots go to cases in order, whichever kernel is ready first.
        self._turns = [asyncio.Event() for _ in range(cases)]

    def pass_turn(self, index: int) -> None:
        self._turns[index].set()

    @contextlib.asynccontextmanager
    async def slot(self, index: int) -> AsyncIterator[None]:
        try:
            if index > 0:
                await self._turns[index - 1].wait()
            await self.slots.acquire()
        finally:
            self.pass_turn(index)
        try:
            yield
        finally:
            self.slots.release()


async def run_case(
    spec: JobSpec, case: Case, client: Client, progress: Progress, state_dir: str,
    done: Callable[[CaseResult], None], stopping: Callable[[], bool] = lambda: False,
    limits: Limits | None = None, nb: nbformat.NotebookNode | None = None,
) -> None:
    """Run one case; report its result through ``done`` even when cancelled."""
    limits = limits or Limits(1, case.index + 1)
    if nb is None:
        nb = await asyncio.to_thread(prepare, spec.notebook, case.params)
    out = spec.output_path(case)
    name = spec.session_name(case)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    # IPC sockets, not TCP ports: ports picked free here can be taken by another kernel
    # starting at the same moment before ours binds them.
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, transport="ipc",
                            ip=os.path.join(state_dir, f"k{case.index}"))
    nbc = NotebookClient(
        nb, km=km, timeout=spec.cell_timeout, allow_errors=False,
        resources={"metadata": {"path": str(spec.notebook.path.parent.resolve())}},
    )
    started: float | None = None  # the case got its slot: its session is requested now
    destroyed, ended, gpu = False, None, ""
    status, error = "error", None
    log = Path(state_dir) / f"{case.label}.log"
    try:
        async with limits.kernels:
            # The kernel's own chatter (ipykernel warnings, session progress) goes to a log
            # that is shown when the case fails for a reason other than a cell.
            with open(log, "ab") as log_file:
                await km.start_kernel(
                    env=kernel_environ(spec, case, state_dir, client.config),
                    stdout=log_file, stderr=log_file,
                    cwd=str(spec.notebook.path.parent.resolve()),
                )
            kc = km.client()
            kc.start_channels()
            nbc.km, nbc.kc = km, kc
            await kc.wait_for_ready(timeout=_KERNEL_START_TIMEOUT)
            async with limits.slot(case.index):
                started = time.time()
                progress.case_started(case, len(code))
                waiting = asyncio.ensure_future(
                    report_wait(client, name, spec.case_resources(case), case, progress))
                try:
                    # The first cell starts the session (the kernel's default, first-cell).
                    for n, index in enumerate(code):
                        await nbc.async_execute_cell(nb.cells[index], index,
                                                     execution_count=n + 1)
                        progress.cell_done(case, n + 1)
                        waiting.cancel()
                    status = "ok"
                finally:
                    waiting.cancel()
                    if not stopping():
                        gpu = await gpu_allocation(client, name)
                        # The kernel is idle (done, failed or dead): end the session before
                        # giving the slot to the next case; the kernel goes after.
                        await asyncio.shield(destroy_quietly(client, name))
                        destroyed, ended = True, time.time()
    except CellExecutionError:
        status = "failed"
    except asyncio.CancelledError:
        status, error = "cancelled", "cancelled"
        raise
    except DeadKernelError:
        # nbclient turns a cancelled cell into DeadKernelError: tell Ctrl-C from a real death.
        status, error = ("cancelled", "cancelled") if stopping() else ("error", "the kernel died")
    except (BackendAIError, RuntimeError, TimeoutError, OSError) as e:
        error = " ".join(str(e).split())[:200] or type(e).__name__
    finally:
        limits.pass_turn(case.index)  # also when this case never got that far
        # Shielded: a second Ctrl-C must not leave the session or the kernel behind.
        await asyncio.shield(_finish(km, nbc, client, name,
                                     session=started is not None and not destroyed))
        if started is None and status == "cancelled":
            result = CaseResult(case=case, status="cancelled", error="not started")
        else:
            result = _result(spec, case, nb, out, status, error, started, ended, log, name)
            result = dataclasses.replace(result, gpu=gpu)
        done(result)
        if started is not None:
            progress.case_done(result)


def _result(
    spec: JobSpec, case: Case, nb: nbformat.NotebookNode, out: Path, status: str,
    error: str | None, started: float | None, ended: float | None, log: Path, name: str,
) -> CaseResult:
    if status == "error":
        error = f"{error}; kernel log: {_tail(log)}" if _tail(log) else error
    failure = first_failure(nb.cells)
    if status == "failed" and failure is not None:
        error = failure.line
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)  # type: ignore[no-untyped-call]
    now = ended or time.time()  # the session's end, when this case gave its slot back
    return CaseResult(
        case=case, status=status, duration=None if started is None else now - started,
        output=str(out), records=read_records(nb.cells), error=error,
        session=name if started is not None else None, submitted_at=started, finished_at=now,
        detail=failure.report() if failure else None,
    )


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


async def report_wait(
    client: Client, name: str, resources: dict[str, str], case: Case, progress: Progress
) -> None:
    """While the case's session is PENDING, tell ``progress`` why, every few seconds (the
    kernel refuses a request that can never run itself, before creating the session)."""
    request = request_amounts(resources)
    said = ""
    while True:
        await asyncio.sleep(WAIT_POLL)
        try:
            why = await pending_reason(client, name, request) or ""
        except BackendAIError:
            return  # refused: the kernel's first cell fails with the reason
        if why != said:
            progress.case_waiting(case, why)
            said = why


async def gpu_allocation(client: Client, name: str) -> str:
    """The accelerator slots the case's session occupies (``"cuda.shares 0.5"``), or ``""``."""
    try:
        info = await client.sessions.info(name)
    except BackendAIError:
        return ""
    slots = parse_slot_map(info.get("occupiedSlots") or info.get("occupied_slots"))
    return describe_slots(slots, accelerators_only=True)


async def _finish(
    km: AsyncKernelManager, nbc: NotebookClient, client: Client, name: str, *, session: bool
) -> None:
    if nbc.kc is not None:
        nbc.kc.stop_channels()
    await _shutdown(km, graceful=session)
    if session:  # a kernel that never got a slot never asked for a session
        await destroy_quietly(client, name)


async def run_attached(
    spec: JobSpec, client: Client, progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> JobResult:
    """Run every case; ``stop`` (set by Ctrl-C) cancels pending cases and running ones."""
    progress = progress or NullProgress()
    stop = stop or asyncio.Event()
    results: dict[int, CaseResult] = {}
    parallel = spec.max_parallel or await default_parallel(
        client, largest(spec.case_resources(c) for c in spec.cases), len(spec.cases),
        fallback=DEFAULT_PARALLEL)
    limits = Limits(parallel, len(spec.cases))
    # Prepared up front, so that the cases' tasks ask for their kernels in case order (the
    # semaphores are first come, first served, and slots go in case order: no deadlock).
    notebooks = await asyncio.to_thread(
        lambda: [prepare(spec.notebook, c.params) for c in spec.cases])
    state_dir = tempfile.mkdtemp(prefix="bai-nbjob-")

    async def one(case: Case) -> None:
        try:
            await run_case(spec, case, client, progress, state_dir,
                           lambda r: results.__setitem__(r.case.index, r), stop.is_set, limits,
                           notebooks[case.index])
        except Exception as e:  # the case could not even be prepared: say why, go on
            results[case.index] = CaseResult(
                case=case, status="error", error=" ".join(str(e).split())[:200]
            )

    tasks = [asyncio.ensure_future(one(c)) for c in spec.cases]
    stopper = asyncio.ensure_future(stop.wait())
    cancelled = False
    try:
        all_done: asyncio.Future[list[object]] = asyncio.gather(*tasks, return_exceptions=True)
        either: list[asyncio.Future[Any]] = [all_done, stopper]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if stopper.done() and not all_done.done():
            cancelled = True
            for t in tasks:
                t.cancel()
        await all_done
    finally:
        stopper.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        shutil.rmtree(state_dir, ignore_errors=True)
    cases = tuple(
        results.get(c.index) or CaseResult(case=c, status="cancelled", error="not started")
        for c in spec.cases
    )
    return JobResult(spec.job_id, cases, cancelled=cancelled)


def write_outputs(spec: JobSpec, result: JobResult) -> tuple[Path, Path] | None:
    """A sweep's summary.csv / summary.json next to its notebooks."""
    if not spec.sweep:
        return None
    return result.write_summary(spec.out_dir)
