"""``run``, ``start`` and ``start-template``: the commands that create sessions and run code.

``run`` is the largest command (code, files, ``--exec``, batch, and ``--env-range``/
``--exec-range`` sweeps with a progress bar), so it and its siblings live apart from
:class:`~.magics.BackendAIMagics`, which only parses the line and dispatches here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..client import Client
from ..client.defaults import named_image
from ..client.parsing import Case, expand_ranges, parse_env, parse_mounts, parse_resource_flags
from . import _exec
from ._parser import PROG
from .errors import RunFailed
from .results import CaseResult, RunResult, SweepResult, Table

if TYPE_CHECKING:
    from .magics import BackendAIMagics


def _spec(args: argparse.Namespace, **extra: Any) -> _exec.RunSpec:
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
    return _exec.RunSpec(
        image=image or named_image(), name=args.name, type=args.type, resources=res.resources,
        resource_opts=res.resource_opts, mounts=tuple(mounts), mount_map=mount_map,
        scaling_group=args.scaling_group, cluster_size=args.cluster_size, tag=args.tag,
        owner=args.owner, enqueue_only=args.enqueue_only, max_wait=args.max_wait,
        domain=args.domain, group=args.group, quiet=args.quiet, **extra,
    )


def run(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> RunResult | SweepResult:
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
    if args.max_parallel < 1:
        raise bad("--max-parallel must be at least 1")
    for f in args.files:
        if not Path(args.basedir or ".", f).is_file() and not Path(f).is_file():
            raise bad(f"no such local file: {f}")
    env = parse_env(args.env)
    cases = expand_ranges(args.env_range, args.exec_range, env_templates=env,
                          exec_template=args.exec)
    spec = _spec(args, code=code, exec=args.exec, build=args.build,
                 files=tuple(args.files), basedir=args.basedir, rm=args.rm)
    client = m.client
    if args.env_range or args.exec_range:
        return _sweep(m, client, spec, cases, args.max_parallel)
    result = _exec.drive(
        lambda emit: _exec.run_session(client, spec, cases[0], emit, destroy=args.rm),
        m._handle,
    )
    m.last_result = result
    if args.raise_ and result.exit_code not in (0, None):
        raise RunFailed(result)
    return result


def _sweep(
    m: BackendAIMagics, client: Client, spec: _exec.RunSpec, cases: Sequence[Case],
    max_parallel: int,
) -> SweepResult:
    from tqdm.auto import tqdm

    done: dict[int, CaseResult] = {}
    running: set[int] = set()
    bar = tqdm(total=len(cases), desc="sweep", unit="case", disable=spec.quiet,
               file=sys.stderr)

    def handle(note: _exec.Note) -> None:
        if isinstance(note, _exec.CaseStarted):
            running.add(note.index)
        elif isinstance(note, _exec.CaseDone):
            running.discard(note.case.index)
            done[note.case.index] = note.case
            bar.update(1)
        else:
            m._handle(note)
            return
        failed = sum(1 for c in done.values() if not c.ok)
        bar.set_postfix(running=len(running), failed=failed, refresh=True)

    try:
        results = _exec.drive(
            lambda emit: _exec.run_sweep(client, spec, cases, emit, max_parallel), handle
        )
    except KeyboardInterrupt:
        bar.close()
        partial = SweepResult(tuple(done[i] for i in sorted(done)), cancelled=True)
        m.last_result = partial
        m._status(f"✗ Sweep interrupted: {len(done)}/{len(cases)} cases finished; "
                  "pending cases were cancelled and every session was destroyed.")
        raise
    bar.close()
    sweep = SweepResult(tuple(sorted(results, key=lambda c: c.index)))
    m.last_result = sweep
    return sweep


def start(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> Table:
    if args.type == "batch" and not args.startup_command:
        raise UsageError(f"{PROG} start: --type batch needs --startup-command CMD")
    spec = _spec(args)
    client = m.client
    info = m._call(_exec.create_session(
        client, spec, name=spec.name, type=spec.type, resources=spec.resources,
        resource_opts=spec.resource_opts, mounts=spec.mounts, mount_map=spec.mount_map,
        environ=parse_env(args.env), scaling_group=spec.scaling_group,
        cluster_size=spec.cluster_size, tag=spec.tag, owner_access_key=spec.owner,
        enqueue_only=spec.enqueue_only, max_wait=spec.max_wait, domain=spec.domain,
        group=spec.group, startup_command=args.startup_command,
    ))
    verb = "is ready" if info.created else "is reused"
    if info.status not in ("RUNNING", ""):
        verb = f"is {info.status}"
    title = f"Session {info.name} ({info.id}) {verb}."
    if not args.quiet:
        m._status("✓ " + title)
        if info.service_ports:
            m._status("This session provides the following app services: "
                      + ", ".join(p.name for p in info.service_ports)
                      + f" (open one with %backendai app {info.name} SERVICE -b PORT)")
    rows = tuple((p.name, p.protocol, ", ".join(map(str, p.ports)))
                 for p in info.service_ports)
    return Table(("service", "protocol", "ports"), rows, title)


def start_template(m: BackendAIMagics, args: argparse.Namespace, cell: str | None) -> None:
    info = m._call(m.client.sessions.create_from_template(
        args.template_id, name=args.name, enqueueOnly=args.enqueue_only or None,
        maxWaitSeconds=args.max_wait or None, domain=args.domain, group=args.group,
    ))
    m._status(f"✓ Session {info.name} ({info.id}) started from template "
              f"{args.template_id} (status {info.status or 'unknown'}).")
