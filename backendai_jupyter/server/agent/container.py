"""A session's container before it starts: cgroups, runtime directories, sandbox, home quota.

What the scheduler asks for (``manager/scheduler.py``) once a session is placed; the pieces
are in :mod:`.cgroups` (memory, pids), :mod:`.sandbox` (namespaces) and :mod:`.diskquota`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import safefs
from .cgroups import create_memory_cgroup, create_pids_cgroup
from .diskquota import HomeImage
from .kernel_runner import SessionProcess
from .sandbox import Isolation, SessionLimits, SessionSandbox, give_to_session, host_ids
from .zygote import Zygote

if TYPE_CHECKING:
    from ..manager.state import ComputeSession

__all__ = ["SIDE_DIRS", "make_mount_point", "mount_home", "session_process"]

#: A session's directories next to its working directory: its runtime files (the kernel's
#: connection file, sshd's configuration and keys; read-only at ``/home/config`` in the
#: sandbox) and its services' logs (never visible in the session).
SIDE_DIRS = (".runtime", ".services")


def make_mount_point(workdir: Path, inside: str) -> None:
    """A folder's mount point under ``/home/work``, made before the sandbox so that it is the
    session user's (bwrap would make missing parents its own, 0700); never through a
    symlink."""
    if not inside.startswith("/home/work/"):
        return
    root = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parts = safefs.parts_of(inside.removeprefix("/home/work/"))
        os.close(safefs.open_dir_beneath(root, parts, create=True))
    finally:
        os.close(root)


async def mount_home(workdir: Path, limits: SessionLimits) -> HomeImage:
    """``/home/work`` on a file system of its own size (``serve -r disk=``; root only)."""
    assert limits.disk is not None
    image = HomeImage(workdir)
    await image.mount(limits.disk, host_ids())
    return image


def _cgroups(sess: ComputeSession, limits: dict[str, Any], pids_max: int) -> tuple[Any, Any]:
    """The session's memory and pids cgroups (``limits["cgroup_procs"]``, or the
    ``RLIMIT_DATA`` fallback without a memory cgroup)."""
    mem = int(limits["mem"])
    procs: list[str] = []
    cgroup = create_memory_cgroup(sess.id, mem)
    if cgroup is not None:
        procs.append(str(cgroup.procs_file))
    else:
        limits["rlimit_mem"] = mem
    pids = create_pids_cgroup(sess.id, pids_max)
    if pids is not None and cgroup is not None and pids.path == cgroup.path:
        pids = None  # cgroup v2: one directory holds both controllers
    if pids is not None:
        procs.append(str(pids.procs_file))
    if procs:
        limits["cgroup_procs"] = procs
    return cgroup, pids


def session_process(
    sess: ComputeSession, limits: dict[str, Any], environ: dict[str, str], *,
    isolation: Isolation, session_limits: SessionLimits, data_dir: Path, zygote: Zygote | None,
) -> SessionProcess:
    """The session's cgroups, runtime directories and sandbox (not started yet)."""
    cgroup, pids = _cgroups(sess, limits, session_limits.pids)
    log_path = sess.workdir.parent / f"{sess.workdir.name}.log"
    # The runtime directory (kernel.json, sshd's files) is read-only in the session; the
    # services' logs are where the session cannot reach at all.
    runtime, logs = (sess.workdir.parent / (sess.workdir.name + s) for s in SIDE_DIRS)
    for d in (runtime, runtime / "ssh", logs):
        d.mkdir(exist_ok=True, mode=0o755 if d is not logs else 0o700)
    service_dir: Path | None = None
    if not isolation.net:
        # Unix sockets for Jupyter/ttyd (no network of its own to listen in); short paths.
        service_dir = Path(tempfile.mkdtemp(prefix=f"bjup-{sess.id[:8]}-"))
        (runtime / "sockets").mkdir(exist_ok=True)
    if isolation.userns and os.geteuid() == 0:
        # The folders are written by the session's user (as vfolders by the kernel's uid on
        # a cluster); what the storage API made since the last start becomes theirs too.
        for host_dir, _ in sess.mounts:
            give_to_session(host_dir)
    sandbox: SessionSandbox | None = None
    if isolation.sandboxed:
        if isolation.userns and service_dir is not None:
            os.chown(service_dir, *host_ids())
        sandbox = SessionSandbox.for_session(
            workdir=sess.workdir, config_dir=runtime, data_dir=data_dir, mounts=sess.mounts,
            isolation=isolation, sockets_dir=service_dir, tmp_size=session_limits.tmp,
        )
    return SessionProcess(
        sess.workdir, environ, limits, log_path, zygote=zygote, sandbox=sandbox,
        cgroup=cgroup, service_dir=service_dir, runtime_dir=runtime, pids_cgroup=pids,
    )
