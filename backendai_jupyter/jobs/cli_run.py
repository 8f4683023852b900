"""``backendai-jupyter run NOTEBOOK``: run a notebook (or a parameter sweep of it) on Backend.AI.

Exit status: 0 when every case ran, 1 when a cell failed (the cell and its error are printed;
output notebooks are written anyway), 2 for bad input (nothing started), 130 after Ctrl-C
(pending cases cancelled, running sessions destroyed).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..client import Client
    from .results import JobResult
    from .spec import JobSpec

__all__ = ["add_arguments", "add_run_arguments", "run"]

PROG = "backendai-jupyter run"


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``run``; the ``%backendai nbrun`` magic uses the same ones."""
    p.add_argument("notebook", metavar="NOTEBOOK.ipynb")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"),
                   help="set a parameter (int/float/True/False/None, else a string)")
    p.add_argument("-f", "--parameters-file", metavar="params.yaml",
                   help="parameters from a YAML mapping (-p wins)")
    p.add_argument("--param-range", action="append", default=[], metavar="NAME=EXPR",
                   help="sweep NAME over case:A,B,... | linspace:START,STOP,N | "
                        "range:START,STOP[,STEP]; one session per combination")
    p.add_argument("-r", "--resources", action="append", default=[], metavar="KEY=VAL",
                   help="resource slot per session, e.g. cpu=2, mem=4g, cuda.shares=0.5")
    p.add_argument("--image", help="session image (default: $BACKEND_IMAGE or the stock Python)")
    p.add_argument("--resource-range", action="append", default=[], metavar="SLOT=EXPR",
                   help="sweep a resource slot too, e.g. cuda.shares=case:0.5,1 (one session "
                        "per value; the summary records what each case got)")
    p.add_argument("-m", "--mount", action="append", default=[], metavar="FOLDER[:PATH]",
                   help="mount a storage folder into each session (repeatable)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output notebook (default NOTEBOOK-output.ipynb); for a sweep, the "
                        "directory for one notebook per case and summary.csv/json "
                        "(default NOTEBOOK-runs)")
    p.add_argument("--max-parallel", type=int, default=None, metavar="N",
                   help="sessions at the same time in a sweep (default: as many GPU cases as "
                        "the free GPU capacity holds, else 2; detached cases queue on the "
                        "manager instead)")
    p.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                   help="fail a cell that runs longer (default: no limit)")
    p.add_argument("--detach", action="store_true",
                   help="submit each case as a batch session and return at once "
                        "(see `backendai-jupyter jobs`)")
    p.add_argument("--folder", default=None, metavar="NAME",
                   help="storage folder for detached jobs (default: backendai-jobs, created "
                        "when missing)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)


def spec_from_args(args: argparse.Namespace) -> JobSpec:
    from .spec import build_spec

    return build_spec(
        args.notebook, params=[tuple(p) for p in args.parameter],
        params_file=args.parameters_file, param_ranges=args.param_range,
        resources=args.resources, resource_ranges=args.resource_range, image=args.image,
        mounts=args.mount, output=args.output,
        max_parallel=args.max_parallel, cell_timeout=args.cell_timeout,
    )


def _err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ..client import BackendAIError, ConfigError

    try:
        spec = spec_from_args(args)
    except ConfigError as e:
        _err(str(e))
        return 2
    for warning in spec.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    try:
        return asyncio.run(_main(spec, args))
    except ConfigError as e:
        _err(str(e))
        return 2
    except BackendAIError as e:
        _err(str(e))
        return 1


async def check_folders(client: Client, names: tuple[str, ...]) -> None:
    """Every ``-m`` folder must exist before any session is requested."""
    from ..client import ConfigError

    if not names:
        return
    known = {f.name for f in await client.folders.list()}
    for name in names:
        if name not in known:
            raise ConfigError(f"no such storage folder: {name}")


async def open_client() -> Client:
    from ..client import Client
    from ..workspace import load_config

    # BACKEND_*, else the embedded local endpoint, which may have to start (blocking): off
    # the loop. The proxy kernels this command starts find the same endpoint again.
    client = Client(await asyncio.to_thread(load_config))
    try:
        await client.connect()
    except BaseException:
        await client.close()
        raise
    return client


async def _main(spec: JobSpec, args: argparse.Namespace) -> int:
    client = await open_client()
    try:
        await check_folders(client, spec.mounts)
        if args.detach:
            from .detached import print_submitted, submit

            job = await submit(spec, client, folder=args.folder)
            print_submitted(job)
            return 0
        return await _attached(spec, client, quiet=args.quiet)
    finally:
        await client.close()


async def _attached(spec: JobSpec, client: Client, *, quiet: bool) -> int:
    from .attached import run_attached
    from .progress import BarProgress

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def interrupted(*_: Any) -> None:
        if not stop.is_set():
            print(f"\n{PROG}: interrupted: cancelling pending cases, destroying sessions …",
                  file=sys.stderr)
        stop.set()

    loop.add_signal_handler(signal.SIGINT, interrupted)
    loop.add_signal_handler(signal.SIGTERM, interrupted)
    bars = BarProgress(len(spec.cases), sweep=spec.sweep, disable=True if quiet else None)
    try:
        result = await run_attached(spec, client, bars, stop)
    finally:
        bars.close()
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    return report(spec, result)


def report(spec: JobSpec, result: JobResult) -> int:
    from .attached import write_outputs

    for case in result.cases:
        if case.status in ("failed", "error"):
            what = f"case {case.case.label}" if spec.sweep else spec.notebook.path.name
            print(f"✗ {what}: {case.error or case.status}", file=sys.stderr)
            if case.detail:
                print(case.detail, file=sys.stderr)
    print(result.to_text())
    written = write_outputs(spec, result)
    if written:
        print(f"summary: {written[0]} {written[1]}")
    elif result.cases and result.cases[0].output:
        print(f"output: {result.cases[0].output}")
    if result.cancelled:
        return 130
    return 0 if result.ok else 1
