"""Crash safety: what a run of the endpoint started, written down so the next run can reap it.

A SIGTERM'd endpoint stops every session itself. A SIGKILL'd (or OOM-killed, or powered-off)
one cannot: its sandboxes die with it (``--die-with-parent``), but unsandboxed sessions' kernels,
``jupyter_server``, ``sshd`` and batch shells would keep running. So each live session has a
record ``<data dir>/running/<session id>.json``: its identity (for the session list), its memory
cgroup, its sandbox's init (pid + start time) and the pids of its processes (pid + start time,
so a recycled pid is never killed). On start the endpoint (:meth:`CrashRecords.reap`):

* kills every recorded process that is still the same process, everything left in the recorded
  cgroup (double-forked daemons included) and removes the cgroup;
* lists those sessions as TERMINATED with the reason ``abnormal-termination`` (the manager's
  name for a kernel that ended without being asked to);
* removes the storage folders' staging files — temporary archives and v5 multipart bodies —
  except the parts of tus uploads whose token is still valid (``<32 hex>.part``, younger than
  the token's 24 h): the token describes the upload, so the client resumes it from the part's
  offset (``storage_proxy.py``). The folders themselves are untouched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cgroups import MemoryCgroup
from .diskquota import unmount_home
from .procfs import start_time

if TYPE_CHECKING:
    from ..manager.state import ComputeSession

__all__ = ["REAPED_REASON", "CrashRecords", "start_time"]

log = logging.getLogger(__name__)
REAPED_REASON = "abnormal-termination"
_STAGING = ".staging"
_TUS_PART = re.compile(r"^[0-9a-f]{32}\.part$")
_TUS_TTL = 24 * 3600  # storage_proxy's token lifetime



def _stamp(pid: int) -> list[Any]:
    return [pid, start_time(pid)]


def session_record(sess: ComputeSession) -> dict[str, Any]:
    """What the next run needs to know about a live session (JSON-ready)."""
    proc = sess.process
    record: dict[str, Any] = {
        "id": sess.id,
        "name": sess.name,
        "access_key": sess.access_key,
        "image": sess.image,
        "type": sess.type,
        "workdir": str(sess.workdir),
        "created_at": sess.created_at,
        "pids": [],
    }
    if proc is None:
        return record
    if proc.cgroup is not None:
        record["cgroup"] = [str(proc.cgroup.path), proc.cgroup.version]
    if proc.pids_cgroup is not None:
        record["pids_cgroup"] = [str(proc.pids_cgroup.path), proc.pids_cgroup.version]
    if proc.home_image is not None:
        record["home_mount"] = True
    if proc.service_dir is not None:
        record["service_dir"] = str(proc.service_dir)
    if proc.sandbox is not None:
        record["pids"] += [_stamp(p) for p in proc.sandbox.pids()]
    record["pids"] += [_stamp(p) for p in proc.pids()]
    return record


def _kill_recorded(pids: list[Any]) -> int:
    killed = 0
    for item in pids:
        try:
            pid, started = int(item[0]), item[1]
        except (TypeError, ValueError, IndexError):
            continue
        if started is None or start_time(pid) != started:
            continue  # gone, or the pid now belongs to someone else
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


class CrashRecords:
    """``<data dir>/running/``: one JSON file per live session."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.dir = data_dir / "running"

    def write(self, sess: ComputeSession) -> None:
        """(Re)write the session's record; call whenever it starts a process."""
        self.dir.mkdir(mode=0o700, exist_ok=True)
        path = self.dir / f"{sess.id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(session_record(sess)))
        tmp.replace(path)

    def remove(self, session_id: str) -> None:
        (self.dir / f"{session_id}.json").unlink(missing_ok=True)

    def reap(self) -> list[dict[str, Any]]:
        """Kill what a previous run left; returns the records of the sessions it had."""
        found: list[dict[str, Any]] = []
        if self.dir.is_dir():
            for path in sorted(self.dir.glob("*.json")):
                try:
                    record = json.loads(path.read_text())
                except (OSError, ValueError):
                    path.unlink(missing_ok=True)
                    continue
                if not isinstance(record, dict):
                    path.unlink(missing_ok=True)
                    continue
                killed = _kill_recorded(record.get("pids") or [])
                for key in ("cgroup", "pids_cgroup"):
                    cg = record.get(key)
                    if isinstance(cg, list) and len(cg) == 2 and str(cg[0]).startswith(
                            "/sys/fs/"):
                        cgroup = MemoryCgroup(Path(str(cg[0])), int(cg[1]))
                        killed += len(cgroup.pids())
                        cgroup.remove()
                if record.get("home_mount") and record.get("id"):
                    unmount_home(self.data_dir / "sessions" / str(record["id"]))
                sdir = record.get("service_dir")
                if isinstance(sdir, str) and Path(sdir).name.startswith("bjup-"):
                    shutil.rmtree(sdir, ignore_errors=True)
                log.warning(
                    "reaped session %s left by a previous run (%d processes killed)",
                    record.get("name"), killed,
                )
                found.append(record)
                path.unlink(missing_ok=True)
            for tmp in self.dir.glob("*.tmp"):
                tmp.unlink(missing_ok=True)
        self._unmount_homes()
        self._clear_staging()
        return found

    def _unmount_homes(self) -> None:
        """No session runs yet: any ``/home/work`` image still mounted in the sessions
        directory was left by a run that could not unmount it (killed, or never shut down)."""
        sessions = self.data_dir / "sessions"
        with contextlib.suppress(OSError):
            for entry in os.scandir(sessions):
                if entry.is_dir(follow_symlinks=False) and os.path.ismount(entry.path):
                    unmount_home(Path(entry.path))

    def _clear_staging(self) -> None:
        root = self.data_dir / "vfolders"
        if not root.is_dir():
            return
        now = time.time()
        for staging in root.glob(f"*/{_STAGING}"):
            for entry in staging.iterdir():
                with contextlib.suppress(OSError):
                    if _TUS_PART.match(entry.name) and now - entry.stat().st_mtime < _TUS_TTL:
                        continue  # a resumable tus upload
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


def terminated_session(record: dict[str, Any], sessions_dir: Path) -> ComputeSession | None:
    """A TERMINATED :class:`ComputeSession` for the session list, from a reaped record."""
    from ..manager.state import ComputeSession

    try:
        sess = ComputeSession(
            id=str(record["id"]),
            name=str(record["name"]),
            access_key=str(record["access_key"]),
            image=str(record.get("image") or ""),
            type=str(record.get("type") or "interactive"),
            workdir=Path(str(record.get("workdir") or sessions_dir / str(record["id"]))),
            resources={},
        )
    except (KeyError, TypeError):
        return None
    sess.created_at = float(record.get("created_at") or time.time())
    sess.set_status("TERMINATED", REAPED_REASON)
    sess.terminated_at = time.time()
    return sess
