"""Typed server state: configuration, the keypair, the session registry — all in ``web.AppKey``s.

Everything the local endpoint remembers lives in two places: these objects (in memory) and the
data directory (the keypair file, one working directory per session). Other server modules — and
the storage/user-config modules written separately — reach the state only through the keys
defined here, so there is one typed way in.

Contract for ``folders`` / ``userconfig``: read ``app[CONFIG].data_dir`` for storage, and
:func:`~.scheduler.resource_usage` for ``/resource/check-presets``.
"""

from __future__ import annotations

import json
import os
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...client._versioning import (
    API_VERSION,
    Features,
    features_for,
    format_api_version,
    parse_api_version,
)
from ..agent.runs import SessionRuns
from .errors import Problem

if TYPE_CHECKING:
    from ..agent.kernel_runner import SessionProcess

__all__ = [
    "CONFIG",
    "DEFAULT_API_VERSION",
    "KEYPAIRS",
    "REGISTRY",
    "ComputeSession",
    "Keypair",
    "Registry",
    "ServerConfig",
    "load_or_create_keypair",
]

#: The version the endpoint announces unless told otherwise: the newest the client speaks.
DEFAULT_API_VERSION = format_api_version(API_VERSION)
KEYPAIR_FILE = "keypair.json"


@dataclass
class ServerConfig:
    """How one local endpoint runs. ``capacity`` overrides detected totals (``{"cpu": "2"}``);
    ``idle_timeout`` (seconds, 0 = never) destroys sessions nobody executed code in."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    api_version: str = DEFAULT_API_VERSION
    capacity: dict[str, str] = field(default_factory=dict)
    idle_timeout: float = 0.0
    default_resources: dict[str, str] = field(default_factory=lambda: {"cpu": "1", "mem": "1g"})
    #: Login for session mode (``/server/login``); defaults to the keypair's user/password.
    keypair: Keypair | None = None
    #: ``auto`` (every layer that works), ``bwrap`` (bubblewrap required), ``strict`` (every
    #: layer required) or ``none`` (``sandbox.py``).
    sandbox: str = "auto"
    #: ``serve -r``: ``{"pids": "1024", "tmp": "1g", "disk": "10g"}`` (``sandbox.SessionLimits``).
    session_limits: dict[str, str] = field(default_factory=dict)
    #: Seconds a create without ``maxWaitSeconds`` waits for capacity before answering 429.
    create_wait: float = 300.0

    @property
    def sessions_dir(self) -> Path:
        return self.data_dir / "sessions"

    @property
    def features(self) -> Features:
        """What the emulated version has (the version table shared with the client)."""
        return features_for(parse_api_version(self.api_version))


@dataclass(frozen=True)
class Keypair:
    """The one local user's credentials (HMAC keypair plus a password for session mode)."""

    access_key: str
    secret_key: str
    user_email: str = "user@localhost"
    password: str = ""
    rate_limit: int = 10000
    role: str = "superadmin"
    user_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_json(self) -> dict[str, Any]:
        return {
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "user_email": self.user_email,
            "password": self.password,
            "user_id": self.user_id,
        }


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_keypair() -> Keypair:
    """A keypair shaped like the manager's (``AKIA`` + 16, 40-char secret)."""
    upper = string.ascii_uppercase + string.digits
    return Keypair(
        access_key="AKIA" + _random(upper, 16),
        secret_key=_random(string.ascii_letters + string.digits + "/+", 40),
        password=secrets.token_urlsafe(12),
    )


def load_or_create_keypair(data_dir: Path) -> tuple[Keypair, bool]:
    """Read ``<data_dir>/keypair.json`` or create it with mode 0600; returns ``(kp, created)``."""
    # 0700 also when the directory already existed: it holds the keypair, every session's files
    # and logs, and the storage folders.
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    data_dir.chmod(0o700)
    path = data_dir / KEYPAIR_FILE
    if path.exists():
        raw = json.loads(path.read_text())
        return (
            Keypair(
                access_key=raw["access_key"],
                secret_key=raw["secret_key"],
                user_email=raw.get("user_email", "user@localhost"),
                password=raw.get("password", ""),
                user_id=raw.get("user_id") or str(uuid.uuid4()),
            ),
            False,
        )
    kp = new_keypair()
    # O_EXCL + 0600 from the start: the secret is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(kp.to_json(), f, indent=1)
    return kp, True


@dataclass
class ComputeSession:
    """One compute session (always one kernel: the local endpoint is single-node)."""

    id: str
    name: str
    access_key: str
    image: str
    type: str
    workdir: Path
    resources: dict[str, str]  # normalized slot → amount, e.g. {"cpu": "1", "mem": "1073741824"}
    environ: dict[str, str] = field(default_factory=dict)
    startup_command: str | None = None
    bootstrap_script: str | None = None
    mounts: list[tuple[Path, str]] = field(default_factory=list)
    tag: str | None = None
    group: str = "default"
    domain: str = "default"
    kernel_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "PENDING"
    status_info: str | None = None
    result: str = "UNDEFINED"
    created_at: float = field(default_factory=time.time)
    terminated_at: float | None = None
    status_history: dict[str, float] = field(default_factory=dict)
    last_used: float = field(default_factory=time.monotonic)
    num_queries: int = 0
    exit_code: int | None = None
    cpu_set: list[int] = field(default_factory=list)
    gpu_set: list[int] = field(default_factory=list)
    process: SessionProcess | None = None
    #: The session's runs (execute.py): owned by the session, dropped with it.
    runs: SessionRuns = field(default_factory=SessionRuns)

    def set_status(self, status: str, info: str | None = None) -> None:
        self.status = status
        self.status_info = info
        self.status_history[status] = time.time()

    @property
    def alive(self) -> bool:
        return self.status not in ("TERMINATED", "CANCELLED")


def session_not_found(msg: str = "No SessionRow matches the given key") -> Problem:
    # 26.9.6 answers exactly this for an unknown name (cluster-facts §1).
    return Problem(404, "entity-not-found", "Entity not found.", msg)


class Registry:
    """All sessions, looked up like the manager does: by UUID prefix or by name, per owner."""

    def __init__(self) -> None:
        self.sessions: dict[str, ComputeSession] = {}

    def add(self, sess: ComputeSession) -> None:
        self.sessions[sess.id] = sess

    def live(self, access_key: str | None = None) -> list[ComputeSession]:
        return [
            s
            for s in self.sessions.values()
            if s.alive and (access_key is None or s.access_key == access_key)
        ]

    def by_name(self, name: str, access_key: str) -> ComputeSession | None:
        for s in self.live(access_key):
            if s.name == name:
                return s
        return None

    def get(self, ident: str, access_key: str, *, allow_dead: bool = False) -> ComputeSession:
        """Exact name first, then a UUID (or its hex prefix ≥ 4 chars). Raises a 404 Problem."""
        pool = [
            s
            for s in self.sessions.values()
            if s.access_key == access_key and (allow_dead or s.alive)
        ]
        # A live session wins over a dead one that had the same name (names are reusable).
        pool.sort(key=lambda s: not s.alive)
        for s in pool:
            if s.name == ident:
                return s
        key = ident.replace("-", "").lower()
        if len(key) >= 4:
            matches = [s for s in pool if s.id.replace("-", "").startswith(key)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise Problem(
                    404,
                    "too-many-sessions-matched",
                    "Too many sessions matched.",
                    data={
                        "matches": [
                            {"id": s.id, "name": s.name, "status": s.status} for s in matches
                        ]
                    },
                )
        raise session_not_found()


CONFIG: web.AppKey[ServerConfig] = web.AppKey("bjup_config", ServerConfig)
KEYPAIRS: web.AppKey[dict[str, Keypair]] = web.AppKey("bjup_keypairs", dict)
REGISTRY: web.AppKey[Registry] = web.AppKey("bjup_registry", Registry)
