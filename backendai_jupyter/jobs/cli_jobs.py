"""``backendai-jupyter jobs [list|wait|fetch|cancel] [JOB]``: detached notebook jobs.

JOB is a job id or a unique prefix of one; without it, the newest job. Exit status of ``wait``
and ``fetch``: 0 when every case ran, 1 when one failed, 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..client import Client
    from .results import CaseResult
    from .state import JobRecord, JobStore

__all__ = ["add_arguments", "run"]

PROG = "backendai-jupyter jobs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="jobs_command", metavar="COMMAND")
    ls = sub.add_parser("list", help="list recent jobs and their cases (the default)")
    ls.add_argument("-n", "--last", type=int, default=5, metavar="N",
                    help="the last N jobs (default 5)")
    w = sub.add_parser("wait", help="wait until every case of a job has finished")
    w.add_argument("job", nargs="?", metavar="JOB")
    w.add_argument("--timeout", type=float, default=None, metavar="SECONDS")
    w.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                   help="seconds between polls (default 2)")
    f = sub.add_parser("fetch", help="download output notebooks and the summary")
    f.add_argument("job", nargs="?", metavar="JOB")
    f.add_argument("-o", "--output", metavar="DIR",
                   help="directory (default NOTEBOOK-JOBID)")
    c = sub.add_parser("cancel", help="destroy the job's sessions that still run")
    c.add_argument("job", nargs="?", metavar="JOB")


def run(args: argparse.Namespace) -> int:
    from ..client import BackendAIError, ConfigError

    try:
        return asyncio.run(_main(args))
    except ConfigError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except (BackendAIError, TimeoutError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1


def _table(job: JobRecord, results: list[CaseResult]) -> str:
    from .results import JobResult

    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created))
    head = f"job {job.job_id}  {job.notebook}  submitted {when}  folder {job.folder}"
    if job.cancelled:
        head += "  (cancelled)"
    return head + "\n" + JobResult(job.job_id, tuple(results)).to_text()


async def _main(args: argparse.Namespace) -> int:
    from .cli_run import open_client
    from .state import JobStore

    store = JobStore()
    command = args.jobs_command or "list"
    if command == "list":
        jobs = sorted(store.all(), key=lambda j: j.created)[-max(1, getattr(args, "last", 5)):]
        if not jobs:
            print(f"no detached jobs (recorded in {store.dir})")
            return 0
    else:
        jobs = [store.get(args.job)]
    client = await open_client()
    try:
        return await _dispatch(command, args, client, jobs, store)
    finally:
        await client.close()


async def _dispatch(
    command: str, args: argparse.Namespace, client: Client, jobs: list[JobRecord],
    store: JobStore,
) -> int:
    from pathlib import Path

    from . import detached

    if command == "list":
        for job in jobs:
            if job.endpoint != str(client.config.endpoint):
                print(f"job {job.job_id}: on {job.endpoint}, not the configured endpoint\n")
                continue
            print(_table(job, await detached.job_status(client, job)) + "\n")
        return 0
    job = jobs[0]
    if job.endpoint != str(client.config.endpoint):
        print(f"{PROG}: job {job.job_id} ran on {job.endpoint}; configure that endpoint first",
              file=sys.stderr)
        return 2
    if command == "cancel":
        n = await detached.cancel(client, job, store)
        print(f"job {job.job_id}: destroyed {n} running session(s)")
        return 0
    if command == "wait":
        def show(results: list[CaseResult]) -> None:
            if sys.stderr.isatty():
                done = sum(r.status not in ("pending", "running") for r in results)
                print(f"\r{job.job_id}: {done}/{len(results)} cases finished",
                      end="", file=sys.stderr, flush=True)

        results = await detached.wait(client, job, timeout=args.timeout,
                                      interval=args.interval, progress=show)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(_table(job, results))
        return 0 if all(r.ok for r in results) else 1
    result = await detached.fetch(client, job, Path(args.output) if args.output else None)
    print(_table(job, list(result.cases)))
    dest = Path(args.output) if args.output else Path(f"{Path(job.notebook).stem}-{job.job_id}")
    print(f"summary: {dest / 'summary.csv'} {dest / 'summary.json'}")
    return 0 if result.ok else 1
