"""One memory cgroup per session: the limit covers the whole session, not each process.

The endpoint creates ``bjup-<session id>`` below its own cgroup, sets the limit there and hands
the ``cgroup.procs`` path to every session process (:mod:`.limits` moves the process in before
anything else runs), so children, daemons and the shared memory the session touches (tmpfs pages
are charged to the cgroup that faults them in) all count. In order of preference:

* cgroup v2 (``memory.max``, ``memory.swap.max = 0``, OOM kills in ``memory.events``) when the
  endpoint's own cgroup delegates the ``memory`` controller;
* the cgroup v1 ``memory`` controller (``memory.limit_in_bytes`` and, where swap accounting is
  on, ``memory.memsw.limit_in_bytes``; OOM kills in ``memory.oom_control``) when its hierarchy
  is writable;
* neither: ``None``, and the caller falls back to per-process ``RLIMIT_DATA`` (and says so once).

A second cgroup, ``pids``, caps the session's processes + threads (``pids.max``: a fork or a
new thread past it fails with ``EAGAIN`` in that session only; :func:`create_pids_cgroup`).

The cgroup's ``cgroup.procs`` also lists every process of the session wherever it re-parented
to: :meth:`MemoryCgroup.kill_all` is how destroy and the crash reaper find double-forked daemons.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_PIDS_MAX",
    "MIN_MEMORY",
    "MemoryCgroup",
    "create_memory_cgroup",
    "create_pids_cgroup",
    "memory_cgroup_parent",
    "pids_cgroup_parent",
]

#: The smallest memory limit a session may ask for (an idle ipykernel needs ~60 MiB).
MIN_MEMORY = 64 * 2**20
_ROOT = Path("/sys/fs/cgroup")
PREFIX = "bjup-"


@dataclass(frozen=True)
class MemoryCgroup:
    path: Path
    version: int  # 1 or 2

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def set_limit(self, limit: int) -> None:
        if self.version == 2:
            (self.path / "memory.max").write_text(str(limit))
            with contextlib.suppress(OSError):
                (self.path / "memory.swap.max").write_text("0")
            return
        (self.path / "memory.limit_in_bytes").write_text(str(limit))
        # memsw (memory + swap) must stay >= the memory limit; set it after.
        with contextlib.suppress(OSError):
            (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit))

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer ended in this cgroup."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (self.path / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def pids(self) -> set[int]:
        try:
            return {int(p) for p in self.procs_file.read_text().split()}
        except (OSError, ValueError):
            return set()

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup (repeated: one may fork while we look)."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left and remove the cgroup (a cgroup with tasks cannot be removed)."""
        self.kill_all()
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)  # the killed tasks are still exiting


def _own_path(controller_line: str) -> str:
    return controller_line.split(":", 2)[2].lstrip("/")


def _cgroup_parent(controller: str, v1_file: str) -> tuple[Path, int] | None:
    """Where this process may create cgroups of ``controller``: ``(directory, version)`` or
    ``None``. v2 where the controller is delegated to our own cgroup, else v1 (``v1_file`` tells
    a usable v1 hierarchy)."""
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    if (_ROOT / "cgroup.controllers").exists():  # unified (v2-only) hierarchy
        line = next((x for x in own if x.startswith("0::")), None)
        if line is not None:
            parent = _ROOT / _own_path(line)
            try:
                if controller in (parent / "cgroup.subtree_control").read_text().split():
                    if os.access(parent, os.W_OK):
                        return parent, 2
            except OSError:
                pass
    line = next((x for x in own if controller in x.split(":")[1].split(",")), None)
    if line is not None:
        parent = _ROOT / controller / _own_path(line)
        if (parent / v1_file).exists() and os.access(parent, os.W_OK):
            return parent, 1
    return None


def memory_cgroup_parent() -> tuple[Path, int] | None:
    """Where this process may create memory cgroups: ``(directory, version)`` or ``None``."""
    return _cgroup_parent("memory", "memory.limit_in_bytes")


def create_memory_cgroup(session_id: str, limit: int) -> MemoryCgroup | None:
    """The session's cgroup with ``limit`` bytes, or ``None`` where none can be written."""
    found = memory_cgroup_parent()
    if found is None:
        return None
    parent, version = found
    cg = MemoryCgroup(parent / f"{PREFIX}{session_id}", version)
    try:
        cg.path.mkdir(exist_ok=True)
        cg.set_limit(limit)
    except OSError:
        with contextlib.suppress(OSError):
            cg.path.rmdir()
        return None
    return cg


#: Processes + threads a session may have at once unless ``-r``/the resource policy says
#: otherwise (an idle ipykernel has ~10 threads; a build with ``make -j`` some hundreds).
DEFAULT_PIDS_MAX = 1024


def pids_cgroup_parent() -> tuple[Path, int] | None:
    """Where this process may create ``pids`` cgroups: ``(directory, version)`` or ``None``."""
    return _cgroup_parent("pids", "cgroup.procs")


def create_pids_cgroup(session_id: str, limit: int) -> MemoryCgroup | None:
    """The session's ``pids`` cgroup with ``pids.max = limit`` (a fork/clone beyond it fails
    with EAGAIN in that session only), or ``None`` where none can be written."""
    found = pids_cgroup_parent()
    if found is None:
        return None
    parent, version = found
    cg = MemoryCgroup(parent / f"{PREFIX}{session_id}", version)
    try:
        cg.path.mkdir(exist_ok=True)
        (cg.path / "pids.max").write_text(str(limit))
    except OSError:
        with contextlib.suppress(OSError):
            cg.path.rmdir()
        return None
    return cg
