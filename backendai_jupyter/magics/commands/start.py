"""``%backendai start``: create (or reuse) a session and list its service ports."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from IPython.core.error import UsageError

from ...client.parsing import parse_env
from ..grammar import PROG, MagicParser
from ..results import Table
from ..runs import add_session_arguments, create_session, spec_from_args

if TYPE_CHECKING:
    from ..context import Context


def add_arguments(p: MagicParser) -> None:
    add_session_arguments(p, start=True)


def run(ctx: Context, args: argparse.Namespace, cell: str | None) -> Table:
    if args.type == "batch" and not args.startup_command:
        raise UsageError(f"{PROG} start: --type batch needs --startup-command CMD")
    spec = spec_from_args(args)
    client = ctx.client
    info = ctx.call(create_session(
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
        ctx.status("✓ " + title)
        if info.service_ports:
            ctx.status("This session provides the following app services: "
                       + ", ".join(p.name for p in info.service_ports)
                       + f" (open one with %backendai app {info.name} SERVICE -b PORT)")
    rows = tuple((p.name, p.protocol, ", ".join(map(str, p.ports)))
                 for p in info.service_ports)
    return Table(("service", "protocol", "ports"), rows, title)
