"""``%backendai nbrun NOTEBOOK.ipynb ...``: ``backendai-jupyter run`` from a notebook.

Same flags, same jobs core (:mod:`backendai_jupyter.jobs`), on the workspace's client and
loop; progress bars are ``tqdm.auto`` (widgets in a notebook), drawn from this thread while the
cases run on the workspace loop. Returns the :class:`~..jobs.results.JobResult` (a table), or,
with ``--detach``, the job's record. Ctrl-C cancels pending cases and destroys the running
sessions before the interrupt is re-raised.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..jobs.attached import run_attached, write_outputs
from ..jobs.cli_run import check_folders, spec_from_args
from ..jobs.params import Case
from ..jobs.progress import BarProgress
from ..jobs.results import CaseResult, JobResult
from ..jobs.state import JobRecord
from ._parser import PROG

if TYPE_CHECKING:
    from .magics import BackendAIMagics

_CLEANUP_TIMEOUT = 120.0


class _Queued:
    """Progress calls made on the workspace loop, replayed on the magic's thread."""

    def __init__(self, calls: queue.SimpleQueue[Callable[[], None]], bars: BarProgress) -> None:
        self._calls = calls
        self._bars = bars

    def case_started(self, case: Case, cells: int) -> None:
        self._calls.put(lambda: self._bars.case_started(case, cells))

    def cell_done(self, case: Case, done: int) -> None:
        self._calls.put(lambda: self._bars.cell_done(case, done))

    def case_done(self, result: CaseResult) -> None:
        self._calls.put(lambda: self._bars.case_done(result))

    def case_waiting(self, case: Case, why: str) -> None:
        self._calls.put(lambda: self._bars.case_waiting(case, why))


def nbrun(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> JobResult | JobRecord:
    spec = spec_from_args(args)  # ParseError/ConfigError: one line, nothing started
    for warning in spec.warnings:
        print(f"{PROG} nbrun: warning: {warning}", file=sys.stderr)
    client = m.client
    m._call(check_folders(client, spec.mounts))
    if args.detach:
        from ..jobs.detached import print_submitted, submit

        job = m._call(submit(spec, client, folder=args.folder))
        print_submitted(job)
        return job
    from tqdm.auto import tqdm

    bars = BarProgress(len(spec.cases), sweep=spec.sweep, bar=tqdm,
                       disable=True if args.quiet else False, out=sys.stderr)
    calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
    stop: list[asyncio.Event] = []

    async def work() -> JobResult:
        stop.append(asyncio.Event())
        return await run_attached(spec, client, _Queued(calls, bars), stop[0])

    bg = m.workspace.loop
    future = bg.submit(work())

    def pump(timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                calls.get(timeout=0.05)()
            except queue.Empty:
                if future.done():
                    while not calls.empty():
                        calls.get_nowait()()
                    return future.result()
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"the cases did not stop within {timeout:g} s") from None

    try:
        result: JobResult = pump()
    except KeyboardInterrupt:
        if stop:
            bg.loop.call_soon_threadsafe(stop[0].set)
        try:
            partial: JobResult = pump(_CLEANUP_TIMEOUT)
            write_outputs(spec, partial)
            done = sum(1 for c in partial.cases if c.ok)
            m._status(f"✗ {PROG} nbrun interrupted: {done}/{len(spec.cases)} cases finished; "
                      "pending cases were cancelled and every session was destroyed.")
        except TimeoutError as e:
            m._status(f"✗ {PROG} nbrun interrupted: {e}")
        finally:
            bars.close()
        raise
    bars.close()
    for case in result.cases:
        if case.status in ("failed", "error"):
            m._status(f"✗ case {case.case.label}: {case.error or case.status}")
            if case.detail:
                m._status(case.detail)
    written = write_outputs(spec, result)
    if written:
        m._status(f"summary: {written[0]} {written[1]}")
    elif result.cases and result.cases[0].output:
        m._status(f"output: {result.cases[0].output}")
    return result
