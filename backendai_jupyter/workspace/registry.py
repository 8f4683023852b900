"""A small on-disk record of the sessions proxy kernels created, to clean up after crashes.

One JSON file per session under ``<jupyter runtime dir>/backendai-sessions/`` (override with
``BACKENDAI_JUPYTER_STATE_DIR``): ``{"name", "id", "endpoint", "access_key", "pid", "host",
"keep"}``. A kernel writes its record when its session starts, marks it detached (``pid: null``)
when it keeps the session on shutdown, and deletes it after destroying the session. At start,
records of *this* endpoint and access key whose process is gone and that were not kept are
orphans: the session they name is destroyed. Never holds a secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Record", "Registry"]


@dataclass(frozen=True)
class Record:
    name: str
    id: str
    endpoint: str
    access_key: str
    pid: int | None
    host: str
    keep: bool

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Record:
        pid = d.get("pid")
        return cls(
            name=str(d.get("name", "")),
            id=str(d.get("id", "")),
            endpoint=str(d.get("endpoint", "")),
            access_key=str(d.get("access_key", "")),
            pid=int(pid) if isinstance(pid, int) else None,
            host=str(d.get("host", "")),
            keep=bool(d.get("keep", False)),
        )


def _default_dir() -> Path:
    env = os.environ.get("BACKENDAI_JUPYTER_STATE_DIR")
    if env:
        return Path(env)
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / "backendai-sessions"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Registry:
    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or _default_dir()

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def save(self, record: Record) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._path(record.name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        tmp.replace(self._path(record.name))

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(name).unlink()

    def records(self) -> list[Record]:
        out: list[Record] = []
        if not self.dir.is_dir():
            return out
        for path in sorted(self.dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(path.read_text())
                if isinstance(data, dict):
                    out.append(Record.from_json(data))
        return out

    def orphans(self, endpoint: str, access_key: str) -> list[Record]:
        """Records of this endpoint/key whose kernel died without cleaning up (and not kept)."""
        host = socket.gethostname()
        return [
            r
            for r in self.records()
            if r.endpoint == endpoint
            and r.access_key == access_key
            and not r.keep
            and r.host == host
            and (r.pid is None or not _alive(r.pid))
        ]
