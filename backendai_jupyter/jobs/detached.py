"""Detached jobs: each case a Backend.AI **batch** session that outlives this process.

``submit`` uploads, to a storage folder (default ``backendai-jobs``, created when missing)::

    <job id>/_executor.py           the in-session executor (stdlib + jupyter_client only)
    <job id>/<case>/input.ipynb     the notebook with its parameters and the record helper
    <job id>/<case>/options.json    executor options (cell timeout)

then creates one batch session per case (enqueued, so it returns at once) whose startup command
is ``python3 <folder>/<job id>/_executor.py <folder>/<job id>/<case>``, relative to the
session's work directory where the folder is mounted. The executor writes ``output.ipynb``,
``status.json`` and ``result.json`` back into the case directory; ``jobs`` commands read them.
Past the keypair's concurrent-session limit the manager keeps sessions queued (PENDING), so
a large sweep simply drains through the scheduler.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import nbformat

from ..client import APIError, Client, ClientError, ConfigError, QuotaError, ServerError
from ..client.images import pick_image
from ..client.sessions import LIVE_STATUSES
from .attached import destroy_quietly
from .notebook import prepare
from .params import Case
from .results import CaseResult, JobResult
from .spec import JobSpec
from .state import CaseRecord, JobRecord, JobStore

__all__ = ["DEFAULT_FOLDER", "cancel", "fetch", "job_status", "print_submitted", "submit", "wait"]

DEFAULT_FOLDER = "backendai-jobs"
EXECUTOR = Path(__file__).with_name("_executor.py")
_STARTING = {"PENDING", "SCHEDULED", "PREPARING", "PREPARED", "CREATING", "PULLING"}


async def ensure_folder(client: Client, folder: str | None) -> str:
    names = {f.name for f in await client.folders.list()}
    if folder is not None:
        if folder not in names:
            raise ConfigError(f"no such storage folder: {folder}")
        return folder
    if DEFAULT_FOLDER not in names:
        await client.folders.create(DEFAULT_FOLDER)
    return DEFAULT_FOLDER


def _stage(spec: JobSpec, root: Path) -> None:
    """The job's files, laid out locally as they will be in the folder."""
    job_dir = root / spec.job_id
    job_dir.mkdir(parents=True)
    shutil.copyfile(EXECUTOR, job_dir / "_executor.py")
    for case in spec.cases:
        case_dir = job_dir / case.label
        case_dir.mkdir()
        nbformat.write(prepare(spec.notebook, case.params),  # type: ignore[no-untyped-call]
                       case_dir / "input.ipynb")
        (case_dir / "options.json").write_text(json.dumps({"cell_timeout": spec.cell_timeout}))


def startup_command(folder: str, job_id: str, label: str) -> str:
    base = f"{folder}/{job_id}"
    return f"python3 {shlex.quote(base + '/_executor.py')} {shlex.quote(base + '/' + label)}"


async def submit(spec: JobSpec, client: Client, *, folder: str | None = None,
                 store: JobStore | None = None) -> JobRecord:
    """Upload the job and enqueue its batch sessions; return its local record."""
    folder = await ensure_folder(client, folder)
    if folder in spec.mounts:
        raise ConfigError(f"the job folder {folder} is mounted already; do not pass it with -m")
    with tempfile.TemporaryDirectory(prefix="bai-nbjob-") as tmp:
        await asyncio.to_thread(_stage, spec, Path(tmp))
        await client.folders.upload(folder, Path(tmp) / spec.job_id, spec.job_id)
    # No image named: the cluster's newest Python image (client.images), as the kernel does.
    image = spec.image or (await pick_image(client, spec.resources)).ref
    created: list[str] = []
    try:
        for case in spec.cases:
            name = spec.session_name(case)
            await client.sessions.create(
                image, name=name, type="batch", resources=spec.case_resources(case),
                resource_opts=dict(spec.resource_opts) or None, mounts=[folder, *spec.mounts],
                mount_map=dict(spec.mount_map) or None, enqueue_only=True, reuse_if_exists=False,
                startup_command=startup_command(folder, spec.job_id, case.label),
            )
            created.append(name)
    except BaseException:
        await asyncio.shield(asyncio.gather(*(destroy_quietly(client, n) for n in created)))
        raise
    job = JobRecord(
        job_id=spec.job_id, created=time.time(), endpoint=str(client.config.endpoint),
        folder=folder, notebook=str(spec.notebook.path),
        cases=tuple(
            CaseRecord(index=c.index, label=c.label, swept=c.swept, params=c.params,
                       session=spec.session_name(c))
            for c in spec.cases
        ),
    )
    (store or JobStore()).save(job)
    return job


def print_submitted(job: JobRecord) -> None:
    print(f"submitted job {job.job_id}: {len(job.cases)} batch session(s), files in storage "
          f"folder {job.folder}/{job.job_id}")
    print(f"  backendai-jupyter jobs wait {job.job_id}   # then: jobs fetch {job.job_id}")


def _case(c: CaseRecord) -> Case:
    return Case(index=c.index, swept=dict(c.swept), params=dict(c.params))


async def _read_json(client: Client, folder: str, path: str, tmp: Path) -> Any:
    try:
        local = await client.folders.download(folder, path, tmp / path.replace("/", "__"))
    except (APIError, ConfigError):  # not there (yet)
        return None
    try:
        return json.loads(local.read_text())
    except (OSError, ValueError):
        return None


async def job_status(client: Client, job: JobRecord) -> list[CaseResult]:
    """Each case: done (from its result.json), pending/running (its session), or lost."""
    # Live sessions first: a session that ends after this call has written its result.
    live = {
        s.get("name"): str(s.get("status", "")).upper()
        for s in await client.sessions.list(status=LIVE_STATUSES, fields=("name", "status"))
    }
    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="bai-nbjob-") as tmp:
        for c in job.cases:
            data = await _read_json(client, job.folder, f"{job.case_dir(c)}/result.json",
                                    Path(tmp))
            if isinstance(data, dict) and data.get("status"):
                results.append(CaseResult(
                    case=_case(c), status=str(data["status"]),
                    duration=_num(data.get("duration")), records=data.get("records") or {},
                    error=data.get("error"), session=c.session,
                    submitted_at=job.created, finished_at=_num(data.get("finished")),
                ))
                continue
            status = live.get(c.session)
            if status is not None:
                word = "pending" if status in _STARTING else (
                    "error" if status == "ERROR" else "running")
                results.append(CaseResult(case=_case(c), status=word, session=c.session,
                                          duration=time.time() - job.created,
                                          submitted_at=job.created))
            else:
                word, why = ("cancelled", "cancelled") if job.cancelled else (
                    "error", "the session ended without a result")
                results.append(CaseResult(case=_case(c), status=word, error=why,
                                          session=c.session, submitted_at=job.created))
    return results


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def finished(results: list[CaseResult]) -> bool:
    return all(r.status not in ("pending", "running") for r in results)


async def wait(client: Client, job: JobRecord, *, timeout: float | None = None,
               interval: float = 2.0, progress: Any = None) -> list[CaseResult]:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            results = await job_status(client, job)
        except (ClientError, ServerError, QuotaError):
            # The manager or storage proxy restarting: the batch sessions go on; ask again.
            results = None
        if results is not None:
            if progress is not None:
                progress(results)
            if finished(results):
                return results
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job.job_id} is not finished after {timeout:g} s")
        await asyncio.sleep(interval)


async def fetch(client: Client, job: JobRecord, dest: Path | None = None) -> JobResult:
    """Download each case's output notebook and result; write summary.csv/json in ``dest``."""
    dest = dest or Path(f"{Path(job.notebook).stem}-{job.job_id}")
    dest.mkdir(parents=True, exist_ok=True)
    stem = Path(job.notebook).stem
    results = []
    for r, c in zip(await job_status(client, job), job.cases, strict=True):
        out = dest / f"{stem}-{c.label}.ipynb"
        try:
            await client.folders.download(job.folder, f"{job.case_dir(c)}/output.ipynb", out)
        except (APIError, ConfigError):  # not there (yet)
            results.append(r)
            continue
        results.append(CaseResult(
            case=r.case, status=r.status, duration=r.duration, output=str(out),
            records=r.records, error=r.error, session=r.session,
            submitted_at=r.submitted_at, finished_at=r.finished_at,
        ))
    result = JobResult(job.job_id, tuple(results), cancelled=job.cancelled)
    result.write_summary(dest)
    return result


async def cancel(client: Client, job: JobRecord, store: JobStore | None = None) -> int:
    """Destroy the job's live sessions; return how many there were."""
    live = {
        s.get("name")
        for s in await client.sessions.list(status=LIVE_STATUSES, fields=("name", "status"))
    }
    mine = [c.session for c in job.cases if c.session in live]
    await asyncio.gather(*(destroy_quietly(client, name) for name in mine))
    (store or JobStore()).save(replace(job, cancelled=True))
    return len(mine)

