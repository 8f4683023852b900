"""``%backendai run``: code, files, ``--exec``, batch, and ``--env-range``/``--exec-range``
sweeps (one session per case, with a progress bar)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from IPython.core.error import UsageError

from ...client import Client
from ...client.parsing import Case, expand_ranges, parse_env
from ...client.scheduling import default_parallel
from ..errors import RunFailed
from ..grammar import PROG, MagicParser
from ..output import CaseDone, CaseStarted, CaseWaiting, Note
from ..results import CaseResult, RunResult, SweepResult
from ..runs import RunSpec, add_session_arguments, run_session, run_sweep, spec_from_args

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(p: MagicParser) -> None:
    p.description = (
        "Run code in a compute session and stream its output into the cell. The code is -c "
        "CODE or the cell body (%%backendai run ...); local FILES are uploaded first, and "
        "without code they run in batch mode (--build, then --exec; default: python "
        "main.py). --env-range/--exec-range run every combination as its own session "
        "(a sweep; the sessions are always destroyed afterwards). Returns a RunResult (or "
        "a SweepResult). A nonzero exit code raises only with --raise."
    )
    add_session_arguments(p, start=False)
    p.add_argument("files", nargs="*", metavar="FILE", help="local files to upload first")
    p.add_argument("-c", "--code", help="the code to run (else: the cell body)")
    p.add_argument("--exec", dest="exec", metavar="CMD",
                   help="shell command to run in batch mode ($VAR refers to an --exec-range)")
    p.add_argument("--build", metavar="CMD", help="build command before --exec (batch mode)")
    p.add_argument("--basedir", metavar="DIR", help="FILES are uploaded relative to DIR")
    p.add_argument("--env-range", action="append", default=[], metavar="VAR=EXPR",
                   help="sweep VAR over case:A,B,... | linspace:START,STOP,N | "
                        "range:START,STOP[,STEP] (used as $VAR in -e values)")
    p.add_argument("--exec-range", action="append", default=[], metavar="VAR=EXPR",
                   help="like --env-range, substituted into --exec")
    p.add_argument("--max-parallel", type=int, default=None, metavar="N",
                   help="sessions run at the same time in a sweep (default: as many GPU cases "
                        "as the free GPU capacity holds, else 2)")
    p.add_argument("--rm", action="store_true", help="destroy the session after the run")
    p.add_argument("--raise", dest="raise_", action="store_true",
                   help="raise RemoteError when the code fails (nonzero exit code)")


def _code(args: argparse.Namespace, cell: str | None) -> str | None:
    """The code to run, after checking the flags go together (else a one-line UsageError)."""
    def bad(message: str) -> UsageError:
        return UsageError(f"{PROG} run: {message}")

    code: str | None = args.code
    if cell is not None and cell.strip():
        if code is not None:
            raise bad("give the code either with -c or as the cell body, not both")
        code = cell
    if code is not None and args.exec:
        raise bad("-c/the cell body and --exec cannot be combined")
    if args.exec_range and not args.exec:
        raise bad("--exec-range needs --exec CMD with $VAR in it")
    if args.type == "batch" and not args.exec:
        raise bad("--type batch needs --exec CMD (the batch session's startup command)")
    if args.type == "batch" and code is not None:
        raise bad("--type batch runs --exec, not code")
    if code is None and not args.files and not args.exec and not args.enqueue_only:
        raise bad("nothing to run: give -c CODE, a cell body, FILE(s) or --exec CMD")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise bad("--max-parallel must be at least 1")
    for f in args.files:
        if not Path(args.basedir or ".", f).is_file() and not Path(f).is_file():
            raise bad(f"no such local file: {f}")
    return code


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> RunResult | SweepResult:
    code = _code(args, cell)
    env = parse_env(args.env)
    cases = expand_ranges(args.env_range, args.exec_range, env_templates=env,
                          exec_template=args.exec)
    spec = spec_from_args(args, code=code, exec=args.exec, build=args.build,
                          files=tuple(args.files), basedir=args.basedir, rm=args.rm)
    client = ctx.client
    if args.env_range or args.exec_range:
        parallel = args.max_parallel or ctx.call(default_parallel(
            client, spec.resources, len(cases), fallback=2, scaling_group=spec.scaling_group))
        return _sweep(ctx, client, spec, cases, parallel)
    result = ctx.stream(
        lambda emit: run_session(client, spec, cases[0], emit, destroy=args.rm)
    )
    ctx.last_result = result
    if args.raise_ and result.exit_code not in (0, None):
        raise RunFailed(result)
    return result


def _sweep(
    ctx: Context, client: Client, spec: RunSpec, cases: Sequence[Case], max_parallel: int
) -> SweepResult:
    from tqdm.auto import tqdm

    done: dict[int, CaseResult] = {}
    running: set[int] = set()
    bar = tqdm(total=len(cases), desc="sweep", unit="case", disable=spec.quiet,
               file=sys.stderr)

    waits: dict[int, str] = {}

    def handle(note: Note) -> None:
        if isinstance(note, CaseWaiting):
            waits[note.index] = note.why
        elif isinstance(note, CaseStarted):
            running.add(note.index)
        elif isinstance(note, CaseDone):
            running.discard(note.case.index)
            waits.pop(note.case.index, None)
            done[note.case.index] = note.case
            bar.update(1)
        else:
            ctx.screen.show(note)
            return
        failed = sum(1 for c in done.values() if not c.ok)
        why = next((waits[i] for i in sorted(waits) if i in running), "")
        postfix = {"waiting": why} if why else {}
        bar.set_postfix(running=len(running), failed=failed, **postfix, refresh=True)

    try:
        results = ctx.stream(
            lambda emit: run_sweep(client, spec, cases, emit, max_parallel), handle
        )
    except KeyboardInterrupt:
        bar.close()
        ctx.last_result = SweepResult(tuple(done[i] for i in sorted(done)), cancelled=True)
        ctx.status(f"✗ Sweep interrupted: {len(done)}/{len(cases)} cases finished; "
                   "pending cases were cancelled and every session was destroyed.")
        raise
    bar.close()
    sweep = SweepResult(tuple(sorted(results, key=lambda c: c.index)))
    ctx.last_result = sweep
    return sweep
