"""``%backendai nbrun NOTEBOOK.ipynb ...``: ``backendai-jupyter run`` from a notebook.

Same flags, same jobs core (:mod:`backendai_jupyter.jobs`), on the workspace's client and
loop; progress bars are ``tqdm.auto`` (widgets in a notebook), drawn from this thread while the
cases run on the workspace loop. Returns the :class:`~...jobs.results.JobResult` (a table), or,
with ``--detach``, the job's record. Ctrl-C cancels pending cases and destroys the running
sessions before the interrupt is re-raised. nbclient and papermill are the optional "jobs"
extra: imported when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ...jobs.cli_run import add_run_arguments
from ...workspace import Inbox
from ..grammar import PROG, MagicParser

if TYPE_CHECKING:
    from ...jobs.params import Case
    from ...jobs.progress import BarProgress
    from ...jobs.results import CaseResult, JobResult
    from ...jobs.spec import JobSpec
    from ..context import Context

_CLEANUP_TIMEOUT = 120.0


def add_arguments(p: MagicParser) -> None:
    p.description = (
        "Run NOTEBOOK on the Backend.AI kernel, one session per case, with papermill's "
        "parameters; returns the summary (JobResult). --detach submits batch sessions instead "
        "(see backendai-jupyter jobs)."
    )
    add_run_arguments(p)


class _Queued:
    """Progress calls made on the workspace loop, replayed on the magic's thread."""

    def __init__(self, calls: Inbox[Callable[[], None]], bars: BarProgress) -> None:
        self._calls = calls
        self._bars = bars

    def case_started(self, case: Case, cells: int) -> None:
        self._calls.post(lambda: self._bars.case_started(case, cells))

    def cell_done(self, case: Case, done: int) -> None:
        self._calls.post(lambda: self._bars.cell_done(case, done))

    def case_done(self, result: CaseResult) -> None:
        self._calls.post(lambda: self._bars.case_done(result))

    def case_waiting(self, case: Case, why: str) -> None:
        self._calls.post(lambda: self._bars.case_waiting(case, why))


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> Any:
    try:  # the jobs extra's modules (nbclient, papermill)
        from ...jobs import attached  # noqa: F401
        from ...jobs.cli_run import check_folders, spec_from_args
        from ...jobs.progress import BarProgress
    except ImportError as e:
        raise UsageError(f"{PROG} nbrun needs the jobs extra (pip install "
                         f"'backendai-jupyter[jobs]'): {e}") from None
    spec = spec_from_args(args)  # ParseError/ConfigError: one line, nothing started
    for warning in spec.warnings:
        print(f"{PROG} nbrun: warning: {warning}", file=sys.stderr)
    client = ctx.client
    ctx.call(check_folders(client, spec.mounts))
    if args.detach:
        from ...jobs.detached import print_submitted, submit

        job = ctx.call(submit(spec, client, folder=args.folder))
        print_submitted(job)
        return job
    from tqdm.auto import tqdm

    bars = BarProgress(len(spec.cases), sweep=spec.sweep, bar=tqdm,
                       disable=True if args.quiet else False, out=sys.stderr)
    try:
        result = _attached(ctx, spec, bars)
    finally:
        bars.close()
    _report(ctx, spec, result)
    return result


def _attached(ctx: Context, spec: JobSpec, bars: BarProgress) -> JobResult:
    """Run the cases on the workspace loop, drawing their progress here; Ctrl-C stops them."""
    from ...jobs.attached import run_attached, write_outputs

    client = ctx.client
    calls: Inbox[Callable[[], None]] = Inbox(lambda call: call())
    stop: list[asyncio.Event] = []

    async def work() -> JobResult:
        stop.append(asyncio.Event())
        return await run_attached(spec, client, _Queued(calls, bars), stop[0])

    bg = ctx.workspace.loop
    future = bg.submit(work())
    try:
        return calls.serve(future)
    except KeyboardInterrupt:
        if stop:
            bg.loop.call_soon_threadsafe(stop[0].set)
        try:
            partial: JobResult = calls.serve(future, _CLEANUP_TIMEOUT)
            write_outputs(spec, partial)
            done = sum(1 for c in partial.cases if c.ok)
            ctx.status(f"✗ {PROG} nbrun interrupted: {done}/{len(spec.cases)} cases finished; "
                       "pending cases were cancelled and every session was destroyed.")
        except TimeoutError:
            ctx.status(f"✗ {PROG} nbrun interrupted: the cases did not stop within "
                       f"{_CLEANUP_TIMEOUT:g} s")
        raise


def _report(ctx: Context, spec: JobSpec, result: JobResult) -> None:
    from ...jobs.attached import write_outputs

    for case in result.cases:
        if case.status in ("failed", "error"):
            ctx.status(f"✗ case {case.case.label}: {case.error or case.status}")
            if case.detail:
                ctx.status(case.detail)
    written = write_outputs(spec, result)
    if written:
        ctx.status(f"summary: {written[0]} {written[1]}")
    elif result.cases and result.cases[0].output:
        ctx.status(f"output: {result.cases[0].output}")
