"""Where detached jobs are remembered on this machine: one JSON file per job under
``$BACKENDAI_JUPYTER_JOBS_DIR``, else ``$XDG_STATE_HOME/backendai-jupyter/jobs`` (default
``~/.local/state/backendai-jupyter/jobs``), mode 0700.

A record names the endpoint, the storage folder, the notebook and each case's label, values and
session name — never a key: the credentials come from the environment when a ``jobs`` command
runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..client import ConfigError

__all__ = ["CaseRecord", "JobRecord", "JobStore"]


@dataclass(frozen=True)
class CaseRecord:
    index: int
    label: str
    swept: dict[str, Any]
    params: dict[str, Any]
    session: str


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    created: float
    endpoint: str
    folder: str
    notebook: str
    cases: tuple[CaseRecord, ...]
    cancelled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def remote_dir(self) -> str:
        return self.job_id

    def case_dir(self, case: CaseRecord) -> str:
        return f"{self.job_id}/{case.label}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=str)

    @classmethod
    def from_json(cls, text: str) -> JobRecord:
        d = json.loads(text)
        cases = tuple(CaseRecord(**c) for c in d.pop("cases"))
        return cls(cases=cases, **d)


def _default_dir() -> Path:
    env = os.environ.get("BACKENDAI_JUPYTER_JOBS_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "backendai-jupyter" / "jobs"


class JobStore:
    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or _default_dir()

    def save(self, job: JobRecord) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.dir / f"{job.job_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(job.to_json())
        tmp.replace(path)
        return path

    def all(self) -> list[JobRecord]:
        jobs = []
        if self.dir.is_dir():
            for path in sorted(self.dir.glob("*.json")):
                try:
                    jobs.append(JobRecord.from_json(path.read_text()))
                except (OSError, ValueError, TypeError, KeyError):
                    continue
        return jobs

    def get(self, job_id: str | None) -> JobRecord:
        """A job by id (a unique prefix is enough); None: the newest one."""
        jobs = self.all()
        if not jobs:
            raise ConfigError(f"no detached jobs recorded in {self.dir}")
        if job_id is None:
            return max(jobs, key=lambda j: j.created)
        found = [j for j in jobs if j.job_id.startswith(job_id)]
        if len(found) != 1:
            why = "no job" if not found else f"{len(found)} jobs"
            raise ConfigError(f"{why} matching {job_id!r} (see backendai-jupyter jobs)")
        return found[0]
